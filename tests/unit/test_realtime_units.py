"""The Realtime stand-in's pure parts, without servers: frames in both framings, filters, value
conversion as to_jsonb renders it, and the pgoutput decoder on hand-built messages."""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest

from devstack.realtime.bindings import BindingError, Filter, parse_binding, parse_filter
from devstack.realtime.frames import (
    ArraySerializer,
    Frame,
    FrameError,
    JsonObjectSerializer,
    UserBroadcast,
    decode_user_broadcast_push,
    encode_user_broadcast,
    serializer_for,
)
from devstack.realtime.pgoutput import PgOutputDecoder
from devstack.realtime.records import NeedsDatabase, to_json_value


def kind3(join_ref: str, ref: str, topic: str, event: str, meta: str, payload: bytes, encoding: int = 1) -> bytes:
    fields = [join_ref.encode(), ref.encode(), topic.encode(), event.encode(), meta.encode()]
    return bytes([3, *map(len, fields), encoding]) + b"".join(fields) + payload


def test_a_user_broadcast_push_becomes_a_broadcast_frame() -> None:
    frame = decode_user_broadcast_push(kind3("1", "5", "realtime:ü", "typing", '{"persist":true}', b'{"a":1}'))
    assert frame == Frame("realtime:ü", "broadcast", {"persist": True, "type": "broadcast", "event": "typing",
                                                      "payload": {"a": 1}}, "5", "1")


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"\x04\x00", id="server-kind"),
        pytest.param(bytes([3, 1, 1, 50, 1, 0, 1]) + b"12ab", id="truncated"),
        pytest.param(kind3("1", "2", "t", "e", "", b"{not json"), id="payload-not-json"),
        pytest.param(kind3("1", "2", "t", "e", "", b"{}", encoding=7), id="unknown-encoding"),
    ],
)
def test_malformed_binary_frames_are_refused(raw: bytes) -> None:
    with pytest.raises(FrameError):
        ArraySerializer().decode(raw)


def test_a_user_broadcast_is_framed_as_supabase_js_decodes_kind_4() -> None:
    raw = encode_user_broadcast(UserBroadcast("realtime:room", "delta", {"t": "é"}, {"id": "x"}))
    kind, topic_len, event_len, meta_len, encoding = struct.unpack_from("5B", raw)
    rest = raw[5:]
    assert (kind, encoding) == (4, 1)
    assert rest[:topic_len].decode() == "realtime:room"
    assert rest[topic_len:topic_len + event_len].decode() == "delta"
    assert json.loads(rest[topic_len + event_len:topic_len + event_len + meta_len]) == {"id": "x"}
    assert json.loads(rest[topic_len + event_len + meta_len:]) == {"t": "é"}


@pytest.mark.parametrize(
    ("serializer", "raw"),
    [
        pytest.param(ArraySerializer(), '{"topic": "t"}', id="v2-object"),
        pytest.param(ArraySerializer(), '[null, "1", "t", "e"]', id="v2-four-fields"),
        pytest.param(ArraySerializer(), '[null, "1", "t", "e", [1]]', id="v2-payload-not-object"),
        pytest.param(JsonObjectSerializer(), "[]", id="v1-array"),
        pytest.param(JsonObjectSerializer(), "{", id="v1-not-json"),
        pytest.param(JsonObjectSerializer(), b"\x03", id="v1-binary"),
    ],
)
def test_malformed_text_frames_are_refused(serializer: Any, raw: str | bytes) -> None:
    with pytest.raises(FrameError):
        serializer.decode(raw)


def test_vsn_1_frames_always_name_ref_and_join_ref() -> None:
    encoded = JsonObjectSerializer().encode(Frame("realtime:t", "system", {}))
    assert json.loads(encoded) == {"topic": "realtime:t", "event": "system", "payload": {}, "ref": None, "join_ref": None}


def test_an_unknown_protocol_version_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported protocol version"):
        serializer_for("3.0.0")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("id=eq.5", Filter("id", "eq", "5"), id="eq"),
        pytest.param("title=neq.a=b", Filter("title", "neq", "a=b"), id="value-with-equals"),
        pytest.param("status=in.(pending, done)", Filter("status", "in", '{"pending","done"}'), id="in"),
    ],
)
def test_filters_parse_as_realtime_parses_them(text: str, expected: Filter) -> None:
    assert parse_filter(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("id=like.5", "use column=op.value", id="unknown-op"),
        pytest.param("id", "use column=op.value", id="no-op"),
        pytest.param("id=in.5", "takes a list", id="in-without-list"),
        pytest.param("id=in.(" + ",".join(map(str, range(101))) + ")", "Maximum 100", id="in-over-100"),
    ],
)
def test_bad_filters_are_refused_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(BindingError, match=message.replace("(", r"\(")):
        parse_filter(text)


def test_a_binding_keeps_what_the_client_sent_for_the_reply() -> None:
    sent = {"event": "insert", "table": "messages"}
    binding = parse_binding(sent)
    assert (binding.event, binding.schema, binding.table) == ("INSERT", "public", "messages")
    assert binding.reply() == {**sent, "id": binding.id}


@pytest.mark.parametrize(
    ("type_oid", "text", "expected"),
    [
        pytest.param(16, "t", True, id="bool"),
        pytest.param(20, "9007199254740993", 9007199254740993, id="int8"),
        pytest.param(1700, "12.50", 12.5, id="numeric"),
        pytest.param(701, "NaN", "NaN", id="float-nan"),
        pytest.param(3802, '{"a": [1]}', {"a": [1]}, id="jsonb"),
        pytest.param(1184, "2026-12-01 09:15:15.123456+00", "2026-12-01T09:15:15.123456+00:00", id="timestamptz"),
        pytest.param(1184, "2026-12-01 09:15:15+05:30", "2026-12-01T09:15:15+05:30", id="timestamptz-offset"),
        pytest.param(1114, "2026-12-01 09:15:15", "2026-12-01T09:15:15", id="timestamp"),
        pytest.param(2950, "6f1c…", "6f1c…", id="uuid"),
        pytest.param(25, None, None, id="null"),
    ],
)
def test_values_are_rendered_as_to_jsonb_renders_them(type_oid: int, text: str | None, expected: Any) -> None:
    assert to_json_value(type_oid, text) == expected


def test_other_types_are_left_to_the_database() -> None:
    with pytest.raises(NeedsDatabase):
        to_json_value(1007, "{1,2}")  # int4[]


def _relation(oid: int, columns: list[tuple[str, int, bool]], identity: bytes = b"d") -> bytes:
    body = b"R" + struct.pack("!I", oid) + b"public\0notes\0" + identity + struct.pack("!H", len(columns))
    for name, type_oid, is_key in columns:
        body += bytes([1 if is_key else 0]) + name.encode() + b"\0" + struct.pack("!Ii", type_oid, -1)
    return body


def _tuple(values: list[str | None]) -> bytes:
    body = struct.pack("!H", len(values))
    for value in values:
        body += b"n" if value is None else b"t" + struct.pack("!I", len(value.encode())) + value.encode()
    return body


def test_pgoutput_transactions_decode_with_the_replica_identity_key() -> None:
    decoder = PgOutputDecoder()
    decoder.feed(_relation(42, [("id", 23, True), ("body", 25, False)]))
    assert decoder.feed(b"B" + struct.pack("!QqI", 1, 0, 7)) is None
    decoder.feed(b"I" + struct.pack("!I", 42) + b"N" + _tuple(["1", "hello"]))
    decoder.feed(b"D" + struct.pack("!I", 42) + b"K" + _tuple(["1", None]))
    transaction = decoder.feed(b"C" + bytes(17))
    assert transaction is not None and transaction.xid == 7
    assert [(c.type, c.new, c.old) for c in transaction.changes] == [
        ("INSERT", {"id": "1", "body": "hello"}, None),
        ("DELETE", None, {"id": "1"}),
    ]
    assert transaction.commit_time.isoformat() == "2000-01-01T00:00:00+00:00"
