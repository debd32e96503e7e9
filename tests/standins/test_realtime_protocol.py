"""The Realtime stand-in's wire protocol where the clients hide it: refusals of the upgrade, both
framings, binary broadcast kinds, join replies, system errors, exactly which columns and old
values a change carries under RLS and REPLICA IDENTITY, commit order, and token expiry."""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from devstack.keys import JwtKeys
from devstack.stack import LocalStack
from tests.support.database import insert_user
from tests.support.realtime import ChatUser, RawSocket, field_of, insert_message
from tests.support.users import user_token


@pytest.fixture
def sockets(db: psycopg.Connection) -> Iterator[list[RawSocket]]:
    opened: list[RawSocket] = []
    yield opened
    for socket in opened:
        socket.close()
    db.execute("delete from realtime.messages")


def open_socket(stack: LocalStack, sockets: list[RawSocket], vsn: str = "2.0.0", api_key: str | None = None) -> RawSocket:
    assert stack.keys is not None
    socket = RawSocket(stack.realtime_url, api_key or stack.keys.api_key("anon"), vsn)
    sockets.append(socket)
    return socket


def event_is(name: str) -> Any:
    return lambda frame: field_of(frame, "event") == name


def postgres_change(type_: str) -> Any:
    return lambda f: field_of(f, "event") == "postgres_changes" and field_of(f, "payload")["data"]["type"] == type_


@pytest.mark.parametrize(
    ("api_key", "reason"),
    [
        pytest.param(None, "Missing or invalid access token", id="missing"),
        pytest.param("not-a-jwt", "Invalid JWT", id="garbage"),
        pytest.param("expired", "Token has expired", id="expired"),
        pytest.param("no-role", "Fields `role` and `exp` are required in JWT", id="no-role"),
    ],
)
def test_the_upgrade_is_refused_with_401_without_a_project_jwt(
    api_key: str | None, reason: str, stack: LocalStack, jwt_keys: JwtKeys
) -> None:
    tokens = {
        "expired": user_token(jwt_keys, "00000000-0000-0000-0000-000000000001", lifetime=-60),
        "no-role": jwt_keys.sign_legacy_token({"exp": int(time.time()) + 60}),
    }
    query = f"?apikey={tokens.get(api_key or '', api_key)}&vsn=2.0.0" if api_key else "?vsn=2.0.0"
    with pytest.raises(InvalidStatus) as refused:
        connect(f"{stack.realtime_url}/websocket{query}", open_timeout=10)
    assert refused.value.response.status_code == 401
    assert reason in json.loads(refused.value.response.body)["error"]


@pytest.mark.parametrize("vsn", ["1.0.0", "2.0.0"])
def test_heartbeat_is_answered_and_an_unjoined_topic_is_refused(vsn: str, stack: LocalStack,
                                                               sockets: list[RawSocket]) -> None:
    socket = open_socket(stack, sockets, vsn)
    ref = socket.push("phoenix", "heartbeat", {})
    reply = socket.expect(lambda f: field_of(f, "ref") == ref, "the heartbeat reply")
    assert field_of(reply, "payload") == {"status": "ok", "response": {}}

    ref = socket.push("realtime:nowhere", "broadcast", {"type": "broadcast", "event": "e", "payload": {}})
    reply = socket.expect(lambda f: field_of(f, "ref") == ref, "the refusal")
    assert field_of(reply, "payload") == {"status": "error", "response": {"reason": "unmatched topic"}}


def test_vsn_1_pushes_carry_an_explicit_null_ref(stack: LocalStack, owner: ChatUser, db: psycopg.Connection,
                                                  sockets: list[RawSocket]) -> None:
    socket = open_socket(stack, sockets, "1.0.0")
    socket.join("rows", {"postgres_changes": [{"event": "INSERT", "schema": "public", "table": "messages"}]},
                access_token=owner.access_token)
    insert_message(db, owner)
    for event in ("system", "presence_state", "postgres_changes"):
        frame = socket.expect(event_is(event), event)
        assert "ref" in frame and frame["ref"] is None, frame


def test_the_join_reply_echoes_the_bindings_in_order_with_ids(stack: LocalStack, owner: ChatUser,
                                                              sockets: list[RawSocket]) -> None:
    bindings = [
        {"event": "INSERT", "schema": "public", "table": "messages", "filter": f"conversation_id=eq.{owner.conversation_id}"},
        {"event": "*", "schema": "public", "table": "conversations"},
        {"event": "DELETE", "schema": "public"},
    ]
    socket = open_socket(stack, sockets)
    join_ref, reply = socket.join("ordered", {"postgres_changes": bindings}, access_token=owner.access_token)

    answered = field_of(reply, "payload")["response"]["postgres_changes"]
    assert [{k: v for k, v in b.items() if k != "id"} for b in answered] == bindings
    assert all(isinstance(b["id"], int) and b["id"] > 0 for b in answered)
    system = socket.expect(event_is("system"), "the subscription's system message")
    assert system == [join_ref, None, "realtime:ordered", "system", {
        "extension": "postgres_changes", "status": "ok", "message": "Subscribed to PostgreSQL", "channel": "ordered"}]


@pytest.mark.parametrize(
    ("binding", "detail"),
    [
        pytest.param({"event": "*", "schema": "private", "table": "webhook_config"}, "", id="not-in-publication"),
        pytest.param({"event": "*", "schema": "public", "table": "messages", "filter": "nope=eq.1"},
                     "invalid column for filter nope", id="unknown-column"),
        pytest.param({"event": "*", "schema": "public", "table": "messages", "filter": "attempts=eq.many"},
                     "invalid value for filter", id="value-not-of-the-type"),
        pytest.param({"event": "*", "schema": "public", "table": "messages",
                      "filter": "attempts=in.(" + ",".join(str(n) for n in range(101)) + ")"},
                     "too many values", id="in-over-100"),
    ],
)
def test_a_binding_realtime_cannot_serve_gets_a_system_error(
    binding: dict[str, Any], detail: str, stack: LocalStack, owner: ChatUser, sockets: list[RawSocket],
) -> None:
    socket = open_socket(stack, sockets)
    _, reply = socket.join("bad", {"postgres_changes": [binding]}, access_token=owner.access_token)
    if field_of(reply, "payload")["status"] == "error":  # malformed before any database check
        assert detail in field_of(reply, "payload")["response"]["reason"]
        return
    system = field_of(socket.expect(event_is("system"), "the system error"), "payload")
    assert system["status"] == "error" and system["extension"] == "postgres_changes"
    assert system["message"].startswith("Unable to subscribe to changes with given parameters")
    assert detail in system["message"]


@pytest.fixture
def probe_tables(db: psycopg.Connection) -> Iterator[None]:
    """An RLS table with a secret column and REPLICA IDENTITY FULL, and an open table beside it."""
    db.execute("""
        create table public.realtime_probe (id int primary key, owner uuid, note text, secret text);
        alter table public.realtime_probe enable row level security;
        alter table public.realtime_probe replica identity full;
        revoke all on public.realtime_probe from anon, authenticated;
        grant select (id, owner, note) on public.realtime_probe to authenticated;
        create policy probe_own on public.realtime_probe for select to authenticated using (owner = auth.uid());
        create table public.realtime_open (id int primary key, note text);
        alter table public.realtime_open replica identity full;
        alter publication supabase_realtime add table public.realtime_probe, public.realtime_open;
    """)
    yield
    db.execute("alter publication supabase_realtime drop table public.realtime_probe, public.realtime_open;"
               " drop table public.realtime_probe, public.realtime_open")


def test_changes_carry_only_what_the_subscriber_may_select(
    probe_tables: None, stack: LocalStack, owner: ChatUser, db: psycopg.Connection, sockets: list[RawSocket],
) -> None:
    socket = open_socket(stack, sockets)
    socket.join("probe", {"postgres_changes": [{"event": "*", "schema": "public", "table": "realtime_probe"},
                                               {"event": "*", "schema": "public", "table": "realtime_open"}]},
                access_token=owner.access_token)
    socket.expect(event_is("system"), "subscribed")
    stranger = insert_user(db)
    db.execute("insert into public.realtime_probe values (1, %s, 'mine', 's3cret'), (2, %s, 'theirs', 'x')",
               (owner.user_id, stranger))
    # Each step waits for the last: like Realtime, the RLS check reads the row as it is when the
    # change is delivered, so a row already deleted would be invisible to its own insert.
    inserted = field_of(socket.expect(postgres_change("INSERT"), "the insert"), "payload")["data"]
    assert inserted["record"] == {"id": 1, "owner": owner.user_id, "note": "mine"}  # no secret, and not row 2
    assert [c["name"] for c in inserted["columns"]] == ["id", "owner", "note"]
    assert inserted["errors"] is None and inserted["commit_timestamp"].endswith("Z")
    db.execute("update public.realtime_probe set note = 'edited' where id = 1")
    updated = field_of(socket.expect(postgres_change("UPDATE"), "the update"), "payload")["data"]
    assert updated["old_record"] == {"id": 1, "owner": owner.user_id, "note": "mine"}  # FULL: the old row
    assert updated["record"]["note"] == "edited"
    db.execute("delete from public.realtime_probe where id = 1")
    deleted = field_of(socket.expect(postgres_change("DELETE"), "the delete"), "payload")["data"]
    assert deleted["old_record"] == {"id": 1}  # RLS: the key only, whatever the replica identity
    assert "record" not in deleted
    db.execute("insert into public.realtime_open values (7, 'open'); delete from public.realtime_open where id = 7")
    open_delete = socket.expect(lambda f: postgres_change("DELETE")(f) and
                                field_of(f, "payload")["data"]["table"] == "realtime_open", "the open delete")
    assert field_of(open_delete, "payload")["data"]["old_record"] == {"id": 7, "note": "open"}
    rows_seen = [field_of(f, "payload")["data"].get("record", {}).get("id") for f in socket.received
                 if field_of(f, "event") == "postgres_changes" and field_of(f, "payload")["data"]["table"] == "realtime_probe"]
    assert 2 not in rows_seen


def test_changes_arrive_in_commit_order(stack: LocalStack, owner: ChatUser, database_url: str,
                                        sockets: list[RawSocket]) -> None:
    socket = open_socket(stack, sockets)
    socket.join("order", {"postgres_changes": [{"event": "INSERT", "schema": "public", "table": "messages"}]},
                access_token=owner.access_token)
    socket.expect(event_is("system"), "subscribed")
    insert = "insert into public.messages (conversation_id, user_id, content) values (%s, %s, %s)"
    with psycopg.connect(database_url) as first, psycopg.connect(database_url) as second:
        # Two conversations: inserts into one are serialised (a message's place in its tree).
        other = first.execute("insert into public.conversations (user_id) values (%s) returning id",
                              (owner.user_id,)).fetchone()
        first.commit()
        assert other is not None
        first.execute(insert, (owner.conversation_id, owner.user_id, "begun first, committed last"))
        second.execute(insert, (other[0], owner.user_id, "begun last, committed first"))
        second.commit()
        first.commit()

    socket.expect(lambda f: len([x for x in socket.received if event_is("postgres_changes")(x)]) == 2, "both rows")
    contents = [field_of(f, "payload")["data"]["record"]["content"] for f in socket.received
                if event_is("postgres_changes")(f)]
    assert contents == ["begun last, committed first", "begun first, committed last"]


def user_broadcast_push(join_ref: str, ref: str, topic: str, event: str, payload: dict[str, Any]) -> bytes:
    """Kind 3, byte for byte as supabase-js's serializer writes it."""
    fields = [join_ref.encode(), ref.encode(), topic.encode(), event.encode(), b""]
    return bytes([3, *map(len, fields), 1]) + b"".join(fields) + json.dumps(payload).encode()


def test_binary_broadcasts_reach_both_framings(stack: LocalStack, sockets: list[RawSocket]) -> None:
    sender, binary_listener, json_listener = (open_socket(stack, sockets, vsn) for vsn in ("2.0.0", "2.0.0", "1.0.0"))
    join_ref, _ = sender.join("wire", {"broadcast": {"ack": True}})
    binary_listener.join("wire", {})
    json_listener.join("wire", {})

    sender.send_raw(user_broadcast_push(join_ref, "99", "realtime:wire", "cursor", {"x": 1}))

    ack = sender.expect(lambda f: field_of(f, "ref") == "99", "the ack")
    assert field_of(ack, "payload") == {"status": "ok", "response": {}}
    frame = binary_listener.expect(lambda f: isinstance(f, bytes), "a kind 4 frame")
    kind, topic_len, event_len, meta_len, encoding = struct.unpack_from("5B", frame)
    assert (kind, encoding) == (4, 1)
    body = frame[5:]
    assert body[:topic_len] == b"realtime:wire"
    assert body[topic_len:topic_len + event_len] == b"cursor"
    assert json.loads(body[topic_len + event_len + meta_len:]) == {"x": 1}
    text = json_listener.expect(event_is("broadcast"), "the JSON broadcast")
    assert text["payload"] == {"type": "broadcast", "event": "cursor", "payload": {"x": 1}, "meta": {}}
    assert text["join_ref"] is None and text["ref"] is None


def test_leave_is_answered_then_closed(stack: LocalStack, sockets: list[RawSocket]) -> None:
    socket = open_socket(stack, sockets)
    join_ref, _ = socket.join("brief", {})
    ref = socket.push("realtime:brief", "phx_leave", {}, join_ref=join_ref)
    socket.expect(lambda f: field_of(f, "ref") == ref and field_of(f, "payload")["status"] == "ok", "leave reply")
    closed = socket.expect(event_is("phx_close"), "phx_close")
    assert field_of(closed, "join_ref") == join_ref


def test_a_token_that_expires_while_joined_closes_the_channel(
    stack: LocalStack, jwt_keys: JwtKeys, owner: ChatUser, sockets: list[RawSocket]
) -> None:
    socket = open_socket(stack, sockets)
    join_ref, reply = socket.join("short", {}, access_token=user_token(jwt_keys, owner.user_id, lifetime=2))
    assert field_of(reply, "payload")["status"] == "ok"

    system = socket.expect(lambda f: event_is("system")(f) and field_of(f, "payload")["extension"] == "system",
                           "the expiry", deadline_seconds=10)
    assert field_of(system, "payload")["message"].startswith("Token has expired")
    assert field_of(socket.expect(event_is("phx_close"), "phx_close"), "join_ref") == join_ref


def test_an_invalid_refreshed_token_errors_and_closes(stack: LocalStack, owner: ChatUser,
                                                      sockets: list[RawSocket]) -> None:
    socket = open_socket(stack, sockets)
    join_ref, _ = socket.join("guarded", {}, access_token=owner.access_token)
    socket.push("realtime:guarded", "access_token", {"access_token": "forged.token.here"}, join_ref=join_ref)
    system = field_of(socket.expect(event_is("system"), "the error"), "payload")
    assert system["status"] == "error" and system["message"].startswith("Invalid JWT")
    socket.expect(event_is("phx_close"), "phx_close")


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        pytest.param({}, {"messages": [{"topic": "t", "event": "e", "payload": {}}]}, 401, id="no-token"),
        pytest.param({"apikey": "service"}, {"messages": []}, 422, id="no-messages"),
        pytest.param({"apikey": "service"}, {"messages": [{"topic": "t", "payload": {}}]}, 422, id="no-event"),
        pytest.param({"apikey": "service"}, {"messages": [{"topic": "t", "event": "e", "payload": [1]}]}, 422,
                     id="payload-not-an-object"),
    ],
)
def test_rest_broadcast_refuses_what_it_cannot_send(
    headers: dict[str, str], body: Any, status: int, stack: LocalStack, jwt_keys: JwtKeys
) -> None:
    if headers.get("apikey") == "service":
        headers = {"apikey": jwt_keys.api_key("service_role")}
    response = httpx.post(f"{stack.api_url}/realtime/v1/api/broadcast", headers=headers, json=body)
    assert response.status_code == status
    assert response.json()["error"]


def test_record_values_are_what_to_jsonb_gives(stack: LocalStack, db: psycopg.Connection,
                                               sockets: list[RawSocket]) -> None:
    db.execute("""
        create table public.realtime_types (
          id int primary key, flag bool, big int8, amount numeric, ratio float8, doc jsonb, at timestamptz,
          local_at timestamp, day date, ident uuid, words text, counts int4[], span int4range);
        alter publication supabase_realtime add table public.realtime_types;
    """)
    try:
        socket = open_socket(stack, sockets, api_key=stack.keys.api_key("service_role") if stack.keys else None)
        socket.join("types", {"postgres_changes": [{"event": "INSERT", "schema": "public", "table": "realtime_types"}]})
        socket.expect(event_is("system"), "subscribed")
        db.execute("""insert into public.realtime_types values (1, true, 9007199254740993, 12.50, 'NaN', '{"a": [1, null]}',
                      '2026-12-01 09:15:15.123456+00', '2026-12-01 09:15:15', '2026-12-01', gen_random_uuid(),
                      'quote " and ünïcode', '{1,2,NULL}', '[1,5)')""")
        record = field_of(socket.expect(postgres_change("INSERT"), "the typed row"), "payload")["data"]["record"]
        expected = db.execute("select to_jsonb(t) from public.realtime_types t").fetchone()
        assert expected is not None
        assert record == expected[0]
    finally:
        db.execute("alter publication supabase_realtime drop table public.realtime_types; drop table public.realtime_types")


def test_the_status_names_the_realtime_url_clients_connect_to(stack: LocalStack, sockets: list[RawSocket]) -> None:
    line = next(line for line in stack.status_text().splitlines() if "Realtime URL" in line)
    url = line.split(": ", 1)[1]
    assert url == f"ws://127.0.0.1:{stack.config.api_port}/realtime/v1"
    assert stack.keys is not None
    socket = RawSocket(url, stack.keys.api_key("anon"))
    sockets.append(socket)
    _, reply = socket.join("status", {})
    assert field_of(reply, "payload")["status"] == "ok"
