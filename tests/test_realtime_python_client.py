"""Realtime through the Python `realtime` client (the one supabase-py uses, protocol 1.0.0):
a subscriber sees its rows and its reply under RLS, and nothing of anyone else's; private
channels refuse intruders; broadcasts from SQL, REST and other clients arrive."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from devstack.service_process import ServiceProcess
from devstack.stack import LocalStack
from tests.conftest import FakeModelControl, user_token
from tests.realtime_support import (
    ChatUser,
    PythonSubscriber,
    Subscribers,
    chat_user,
    closing,
    insert_message,
    quiet_for,
)


@pytest.fixture
def subscribers(db: psycopg.Connection) -> Iterator[Subscribers]:
    yield from closing()
    db.execute("delete from realtime.messages")


@pytest.fixture
def alice(stack: LocalStack, db: psycopg.Connection) -> ChatUser:
    return chat_user(stack, db)


@pytest.fixture
def bob(stack: LocalStack, db: psycopg.Connection) -> ChatUser:
    return chat_user(stack, db)


def subscriber(stack: LocalStack, subscribers: Subscribers, token: str | None) -> PythonSubscriber:
    assert stack.keys is not None
    return subscribers.add(PythonSubscriber(stack.realtime_url, stack.keys.api_key("anon"), token))


def changes(event: dict[str, Any], type_: str | None = None) -> dict[str, Any] | None:
    if event["type"] != "postgres" or (type_ and event["payload"]["data"]["type"] != type_):
        return None
    return dict(event["payload"]["data"])


def test_subscriber_sees_its_message_its_status_and_the_reply(
    live_service: ServiceProcess, fake_model: FakeModelControl, stack: LocalStack, db: psycopg.Connection,
    alice: ChatUser, subscribers: Subscribers,
) -> None:
    client = subscriber(stack, subscribers, alice.access_token)
    client.subscribe("conversation", postgres=[
        {"event": "*", "schema": "public", "table": "messages", "filter": f"conversation_id=eq.{alice.conversation_id}"},
    ])
    client.subscribed("conversation")
    client.expect(lambda e: e["type"] == "system" and e["payload"]["message"] == "Subscribed to PostgreSQL",
                  "postgres changes subscribed")

    message_id = insert_message(db, alice, "hello realtime")

    inserted = client.expect(lambda e: (c := changes(e, "INSERT")) is not None and c["record"]["id"] == message_id,
                             "the user row")
    assert inserted["payload"]["data"]["record"]["content"] == "hello realtime"
    assert inserted["payload"]["data"]["record"]["status"] == "pending"
    done = client.expect(lambda e: (c := changes(e, "UPDATE")) is not None and c["record"]["id"] == message_id
                         and c["record"]["status"] == "done", "the status update to done")
    assert done["payload"]["data"]["old_record"] == {"id": message_id}  # REPLICA IDENTITY DEFAULT: the key only
    reply = client.expect(lambda e: (c := changes(e, "INSERT")) is not None and c["record"]["reply_to"] == message_id,
                          "the assistant reply row")
    assert reply["payload"]["data"]["record"]["role"] == "assistant"
    assert reply["payload"]["data"]["record"]["content"] == "Echo: hello realtime"


def test_another_users_subscriber_receives_none_of_their_rows(
    stack: LocalStack, db: psycopg.Connection, alice: ChatUser, bob: ChatUser, subscribers: Subscribers,
) -> None:
    client = subscriber(stack, subscribers, bob.access_token)
    client.subscribe("everything", postgres=[{"event": "*", "schema": "public", "table": "messages"},
                                             {"event": "*", "schema": "public", "table": "conversations"}])
    client.subscribed("everything")

    alices = insert_message(db, alice, "alice's secret")
    db.execute("update public.conversations set title = 'renamed' where id = %s", (alice.conversation_id,))
    bobs = insert_message(db, bob, "bob's own")

    quiet_for(client.events, client.seen,
              lambda e: e["type"] == "postgres" and e["payload"]["data"]["record"]["user_id"] == alice.user_id,
              lambda e: e["type"] == "postgres" and e["payload"]["data"].get("record", {}).get("id") == bobs)
    assert all(e["payload"]["data"]["record"]["id"] != alices for e in client.seen if e["type"] == "postgres")


@pytest.mark.parametrize(
    ("filter_", "delivered"),
    [
        pytest.param("conversation_id=eq.{conversation}", True, id="eq"),
        pytest.param("conversation_id=neq.{conversation}", False, id="neq"),
        pytest.param("status=in.(pending,done)", True, id="in"),
        pytest.param("status=in.(failed)", False, id="not-in"),
        pytest.param("attempts=lt.1", True, id="lt"),
        pytest.param("attempts=lte.-1", False, id="lte"),
        pytest.param("attempts=gt.0", False, id="gt"),
        pytest.param("attempts=gte.0", True, id="gte"),
        pytest.param("created_at=gt.2000-01-01T00:00:00Z", True, id="timestamptz-cast"),
        pytest.param("error=eq.null", False, id="null-never-matches"),
    ],
)
def test_filters_are_compared_as_the_columns_type(
    filter_: str, delivered: bool, stack: LocalStack, db: psycopg.Connection, alice: ChatUser,
    subscribers: Subscribers,
) -> None:
    client = subscriber(stack, subscribers, alice.access_token)
    client.subscribe("filtered", postgres=[
        {"event": "INSERT", "schema": "public", "table": "messages",
         "filter": filter_.format(conversation=alice.conversation_id)},
    ])
    client.subscribe("marker", postgres=[{"event": "INSERT", "schema": "public", "table": "messages"}])
    client.subscribed("filtered")
    client.subscribed("marker")

    message_id = insert_message(db, alice)

    def mine(channel: str) -> Any:
        return lambda e: e["channel"] == channel and (c := changes(e)) is not None and c["record"]["id"] == message_id

    client.expect(mine("marker"), "the unfiltered copy")
    if delivered:
        client.expect(mine("filtered"), "the filtered change")
    else:
        quiet_for(client.events, client.seen, mine("filtered"), mine("marker"))


def test_a_private_chat_channel_admits_its_owner_and_refuses_another_user(
    stack: LocalStack, alice: ChatUser, bob: ChatUser, subscribers: Subscribers,
) -> None:
    owner = subscriber(stack, subscribers, alice.access_token)
    intruder = subscriber(stack, subscribers, bob.access_token)
    topic = f"chat:{alice.conversation_id}"

    owner.subscribe(topic, config={"private": True})
    intruder.subscribe(topic, config={"private": True})

    owner.subscribed(topic)
    refused = intruder.expect(lambda e: e["type"] == "status" and e["status"] == "CHANNEL_ERROR", "the refusal")
    assert f"You do not have permissions to read from this Channel topic: {topic}" in refused["error"]


def test_broadcasts_from_sql_and_rest_reach_the_private_channel(
    stack: LocalStack, db: psycopg.Connection, alice: ChatUser, subscribers: Subscribers,
) -> None:
    assert stack.keys is not None
    topic = f"chat:{alice.conversation_id}"
    client = subscriber(stack, subscribers, alice.access_token)
    client.subscribe(topic, config={"private": True}, broadcast=["delta", "from-rest", "from-alice"])
    client.subscribed(topic)

    with db.transaction():
        db.execute("select realtime.send('{\"text\": \"Hel\"}'::jsonb, 'delta', %s, true)", (topic,))
        assert not [e for e in client.seen if e["type"] == "broadcast"]  # nothing before commit
    from_sql = client.expect(lambda e: e["type"] == "broadcast" and e["payload"]["event"] == "delta", "realtime.send")
    assert from_sql["payload"]["payload"]["text"] == "Hel"
    assert from_sql["payload"]["meta"]["id"] == from_sql["payload"]["payload"]["id"]

    # A user may not broadcast into the chat channel: the policy lets them read it only.
    refused = httpx.post(f"{stack.api_url}/realtime/v1/api/broadcast",
                         headers={"Authorization": f"Bearer {alice.access_token}"},
                         json={"messages": [{"topic": topic, "event": "from-alice", "payload": {}, "private": True}]})
    assert refused.status_code == 202
    sent = httpx.post(f"{stack.api_url}/realtime/v1/api/broadcast",
                      headers={"Authorization": f"Bearer {stack.keys.api_key('service_role')}"},
                      json={"messages": [{"topic": topic, "event": "from-rest", "payload": {"n": 1}, "private": True}]})
    assert sent.status_code == 202 and sent.content == b""
    quiet_for(client.events, client.seen,
              lambda e: e["type"] == "broadcast" and e["payload"]["event"] == "from-alice",
              lambda e: e["type"] == "broadcast" and e["payload"]["event"] == "from-rest")


def test_client_to_client_broadcast_skips_the_sender_unless_self(
    stack: LocalStack, alice: ChatUser, bob: ChatUser, subscribers: Subscribers,
) -> None:
    sender = subscriber(stack, subscribers, alice.access_token)
    echoing = subscriber(stack, subscribers, alice.access_token)
    listener = subscriber(stack, subscribers, bob.access_token)
    sender.subscribe("lobby", broadcast=["wave"])
    echoing.subscribe("lobby", broadcast=["wave"], config={"broadcast": {"self": True}})
    listener.subscribe("lobby", broadcast=["wave"])
    for client in (sender, echoing, listener):
        client.subscribed("lobby")

    sender.run(sender.channels["lobby"].send_broadcast("wave", {"from": "sender"}))
    echoing.run(echoing.channels["lobby"].send_broadcast("wave", {"from": "echoing"}))

    for client in (listener, echoing):
        client.expect(lambda e: e["type"] == "broadcast" and e["payload"]["payload"] == {"from": "sender"}, "wave")
        client.expect(lambda e: e["type"] == "broadcast" and e["payload"]["payload"] == {"from": "echoing"}, "echo")
    quiet_for(sender.events, sender.seen,
              lambda e: e["type"] == "broadcast" and e["payload"]["payload"] == {"from": "sender"},
              lambda e: e["type"] == "broadcast" and e["payload"]["payload"] == {"from": "echoing"})


def test_a_refreshed_token_keeps_the_subscription(
    stack: LocalStack, db: psycopg.Connection, alice: ChatUser, subscribers: Subscribers,
) -> None:
    assert stack.keys is not None
    client = subscriber(stack, subscribers, alice.access_token)
    client.subscribe("conversation", postgres=[{"event": "INSERT", "schema": "public", "table": "messages"}])
    client.subscribed("conversation")

    client.run(client.client.set_auth(user_token(stack.keys, alice.user_id, lifetime=7200)))
    message_id = insert_message(db, alice)

    client.expect(lambda e: (c := changes(e)) is not None and c["record"]["id"] == message_id, "the row, after refresh")


def test_presence_track_reaches_every_member(stack: LocalStack, alice: ChatUser, bob: ChatUser,
                                             subscribers: Subscribers) -> None:
    first = subscriber(stack, subscribers, alice.access_token)
    second = subscriber(stack, subscribers, bob.access_token)
    first.subscribe("room", presence=True, config={"presence": {"key": "alice"}})
    second.subscribe("room", presence=True, config={"presence": {"key": "bob"}})
    first.subscribed("room")
    second.subscribed("room")

    first.run(first.channels["room"].track({"typing": True}))

    synced = second.expect(lambda e: e["type"] == "presence_sync" and "alice" in e["state"], "alice's presence")
    assert synced["state"]["alice"][0]["typing"] is True
