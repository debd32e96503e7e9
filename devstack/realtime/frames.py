"""Phoenix frames as Supabase Realtime puts them on the wire, in both protocol versions.

The Python `realtime` client speaks vsn 1.0.0: JSON objects, and it validates strictly, so every
server push carries `"ref": null` explicitly (a missing key makes it drop the frame silently).
supabase-js speaks vsn 2.0.0: JSON arrays `[join_ref, ref, topic, event, payload]`, plus binary
frames for user broadcasts: it sends `channel.send({type: 'broadcast'})` as kind 3 and can only
decode kind 4 from the server. The serializer is chosen per connection from the `vsn` parameter.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any, Protocol

VSN_1 = "1.0.0"
VSN_2 = "2.0.0"
SUPPORTED_VSNS = (VSN_1, VSN_2)

KIND_USER_BROADCAST_PUSH = 3
KIND_USER_BROADCAST = 4
ENCODING_BINARY = 0
ENCODING_JSON = 1


class FrameError(ValueError):
    """A frame the server cannot read: not JSON, wrong shape, or a truncated binary frame."""


@dataclass(frozen=True)
class Frame:
    """One Phoenix message. `payload` is a JSON object, or raw bytes for a binary broadcast."""

    topic: str
    event: str
    payload: Any
    ref: str | None = None
    join_ref: str | None = None


@dataclass(frozen=True)
class UserBroadcast:
    """A user broadcast on its way to a subscriber: the event, the payload and the server's meta."""

    topic: str
    event: str
    payload: Any
    meta: dict[str, Any]

    def as_payload(self) -> dict[str, Any]:
        """The `broadcast` frame's payload, as both clients read it from a text frame."""
        return {"type": "broadcast", "event": self.event, "payload": self.payload, "meta": self.meta}


Encoded = str | bytes


class Serializer(Protocol):
    def decode(self, raw: Encoded) -> Frame: ...

    def encode(self, frame: Frame) -> Encoded: ...

    def encode_broadcast(self, broadcast: UserBroadcast) -> Encoded: ...


def _as_ref(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return str(value)
    raise FrameError(f"ref must be a string or null, got {type(value).__name__}")


def _checked(topic: Any, event: Any, payload: Any) -> tuple[str, str, Any]:
    if not isinstance(topic, str) or not isinstance(event, str):
        raise FrameError("topic and event must be strings")
    if not isinstance(payload, dict):
        raise FrameError("payload must be a JSON object")
    return topic, event, payload


class JsonObjectSerializer:
    """vsn 1.0.0: `{"topic", "event", "payload", "ref", "join_ref"}` text frames only."""

    def decode(self, raw: Encoded) -> Frame:
        if isinstance(raw, bytes):
            raise FrameError("binary frames need vsn=2.0.0")
        try:
            message = json.loads(raw)
        except ValueError as error:
            raise FrameError(f"not JSON: {error}") from None
        if not isinstance(message, dict):
            raise FrameError("a vsn 1.0.0 frame is a JSON object")
        topic, event, payload = _checked(message.get("topic"), message.get("event"), message.get("payload"))
        return Frame(topic, event, payload, _as_ref(message.get("ref")), _as_ref(message.get("join_ref")))

    def encode(self, frame: Frame) -> Encoded:
        return json.dumps(
            {"topic": frame.topic, "event": frame.event, "payload": frame.payload, "ref": frame.ref,
             "join_ref": frame.join_ref},
            separators=(",", ":"),
        )

    def encode_broadcast(self, broadcast: UserBroadcast) -> Encoded:
        return self.encode(Frame(broadcast.topic, "broadcast", broadcast.as_payload()))


class ArraySerializer:
    """vsn 2.0.0: `[join_ref, ref, topic, event, payload]` text frames, binary user broadcasts."""

    def decode(self, raw: Encoded) -> Frame:
        if isinstance(raw, bytes):
            return decode_user_broadcast_push(raw)
        try:
            message = json.loads(raw)
        except ValueError as error:
            raise FrameError(f"not JSON: {error}") from None
        if not isinstance(message, list) or len(message) != 5:
            raise FrameError("a vsn 2.0.0 text frame is [join_ref, ref, topic, event, payload]")
        join_ref, ref, topic, event, payload = message
        topic, event, payload = _checked(topic, event, payload)
        return Frame(topic, event, payload, _as_ref(ref), _as_ref(join_ref))

    def encode(self, frame: Frame) -> Encoded:
        return json.dumps([frame.join_ref, frame.ref, frame.topic, frame.event, frame.payload], separators=(",", ":"))

    def encode_broadcast(self, broadcast: UserBroadcast) -> Encoded:
        return encode_user_broadcast(broadcast)


def serializer_for(vsn: str) -> Serializer:
    """The framing a connection asked for; ValueError for a version Realtime does not speak."""
    if vsn == VSN_1:
        return JsonObjectSerializer()
    if vsn == VSN_2:
        return ArraySerializer()
    raise ValueError(f"unsupported protocol version {vsn!r}: use one of {', '.join(SUPPORTED_VSNS)}")


def decode_user_broadcast_push(raw: bytes) -> Frame:
    """Kind 3, client to server: header lengths, then join_ref, ref, topic, event, meta, payload.

    The frame becomes the same `broadcast` push a text frame would be, so the channel handles
    one shape: `{"type": "broadcast", "event", "payload", **meta}`."""
    header = 7
    if len(raw) < header or raw[0] != KIND_USER_BROADCAST_PUSH:
        raise FrameError("the only binary frame a client may send is a user broadcast push (kind 3)")
    join_ref_len, ref_len, topic_len, event_len, meta_len, encoding = struct.unpack_from("6B", raw, 1)
    fields: list[str] = []
    offset = header
    try:
        for length in (join_ref_len, ref_len, topic_len, event_len, meta_len):
            if offset + length > len(raw):
                raise FrameError("binary frame shorter than its header says")
            fields.append(raw[offset:offset + length].decode())
            offset += length
    except UnicodeDecodeError:
        raise FrameError("binary frame header is not UTF-8") from None
    join_ref, ref, topic, event, meta_text = fields
    body = raw[offset:]
    payload: Any
    if encoding == ENCODING_JSON:
        try:
            payload = json.loads(body)
        except ValueError:
            raise FrameError("JSON-encoded broadcast payload is not JSON") from None
    elif encoding == ENCODING_BINARY:
        payload = bytes(body)
    else:
        raise FrameError(f"unknown payload encoding {encoding}")
    meta: dict[str, Any] = {}
    if meta_text:
        try:
            parsed = json.loads(meta_text)
        except ValueError:
            raise FrameError("broadcast metadata is not JSON") from None
        meta = parsed if isinstance(parsed, dict) else {}
    return Frame(topic, "broadcast", {**meta, "type": "broadcast", "event": event, "payload": payload},
                 ref or None, join_ref or None)


def encode_user_broadcast(broadcast: UserBroadcast) -> bytes:
    """Kind 4, server to client: what supabase-js decodes into `{type, event, payload, meta}`."""
    topic = broadcast.topic.encode()
    event = broadcast.event.encode()
    meta = json.dumps(broadcast.meta, separators=(",", ":")).encode() if broadcast.meta else b""
    if isinstance(broadcast.payload, (bytes, bytearray)):
        encoding, body = ENCODING_BINARY, bytes(broadcast.payload)
    else:
        encoding, body = ENCODING_JSON, json.dumps(broadcast.payload, separators=(",", ":")).encode()
    for name, value in (("topic", topic), ("event", event), ("meta", meta)):
        if len(value) > 255:
            raise FrameError(f"broadcast {name} longer than 255 bytes cannot be framed")
    return struct.pack("5B", KIND_USER_BROADCAST, len(topic), len(event), len(meta), encoding) + topic + event + meta + body
