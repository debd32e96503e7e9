"""Realtime through the Python `realtime` client (the one supabase-py uses, protocol 1.0.0):
a subscriber sees its rows and its reply under RLS, and nothing of anyone else's; private
channels refuse intruders; broadcasts from SQL, REST and other clients arrive."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
import pytest

from devstack.stack import LocalStack
from tests.support.realtime import (
    ChatUser,
    Subscribers,
    insert_message,
    python_change,
    python_subscriber,
    quiet_for,
)
from tests.support.users import user_token


def test_another_users_subscriber_receives_none_of_their_rows(
    stack: LocalStack, db: psycopg.Connection, owner: ChatUser, stranger: ChatUser, realtime_clients: Subscribers,
) -> None:
    client = python_subscriber(stack, realtime_clients, stranger.access_token)
    client.subscribe("everything", postgres=[{"event": "*", "schema": "public", "table": "messages"},
                                             {"event": "*", "schema": "public", "table": "conversations"}])
    client.subscribed("everything")

    owners = insert_message(db, owner, "owner's secret")
    db.execute("update public.conversations set title = 'renamed' where id = %s", (owner.conversation_id,))
    strangers = insert_message(db, stranger, "stranger's own")

    quiet_for(client.events, client.seen,
              lambda e: e["type"] == "postgres" and e["payload"]["data"]["record"]["user_id"] == owner.user_id,
              lambda e: e["type"] == "postgres" and e["payload"]["data"].get("record", {}).get("id") == strangers)
    assert all(e["payload"]["data"]["record"]["id"] != owners for e in client.seen if e["type"] == "postgres")


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
    filter_: str, delivered: bool, stack: LocalStack, db: psycopg.Connection, owner: ChatUser,
    realtime_clients: Subscribers,
) -> None:
    client = python_subscriber(stack, realtime_clients, owner.access_token)
    client.subscribe("filtered", postgres=[
        {"event": "INSERT", "schema": "public", "table": "messages",
         "filter": filter_.format(conversation=owner.conversation_id)},
    ])
    client.subscribe("marker", postgres=[{"event": "INSERT", "schema": "public", "table": "messages"}])
    client.subscribed("filtered")
    client.subscribed("marker")

    message_id = insert_message(db, owner)

    def mine(channel: str) -> Any:
        return lambda e: e["channel"] == channel and (c := python_change(e)) is not None and c["record"]["id"] == message_id

    client.expect(mine("marker"), "the unfiltered copy")
    if delivered:
        client.expect(mine("filtered"), "the filtered change")
    else:
        quiet_for(client.events, client.seen, mine("filtered"), mine("marker"))


def test_a_private_chat_channel_admits_its_owner_and_refuses_another_user(
    stack: LocalStack, owner: ChatUser, stranger: ChatUser, realtime_clients: Subscribers,
) -> None:
    owners_client = python_subscriber(stack, realtime_clients, owner.access_token)
    intruder = python_subscriber(stack, realtime_clients, stranger.access_token)
    topic = f"chat:{owner.conversation_id}"

    owners_client.subscribe(topic, config={"private": True})
    intruder.subscribe(topic, config={"private": True})

    owners_client.subscribed(topic)
    refused = intruder.expect(lambda e: e["type"] == "status" and e["status"] == "CHANNEL_ERROR", "the refusal")
    assert f"You do not have permissions to read from this Channel topic: {topic}" in refused["error"]


def test_broadcasts_from_sql_and_rest_reach_the_private_channel(
    stack: LocalStack, db: psycopg.Connection, owner: ChatUser, realtime_clients: Subscribers,
) -> None:
    assert stack.keys is not None
    topic = f"chat:{owner.conversation_id}"
    client = python_subscriber(stack, realtime_clients, owner.access_token)
    client.subscribe(topic, config={"private": True}, broadcast=["delta", "from-rest", "from-owner"])
    client.subscribed(topic)

    with db.transaction():
        db.execute("select realtime.send('{\"text\": \"Hel\"}'::jsonb, 'delta', %s, true)", (topic,))
        assert not [e for e in client.seen if e["type"] == "broadcast"]  # nothing before commit
    from_sql = client.expect(lambda e: e["type"] == "broadcast" and e["payload"]["event"] == "delta", "realtime.send")
    assert from_sql["payload"]["payload"]["text"] == "Hel"
    assert from_sql["payload"]["meta"]["id"] == from_sql["payload"]["payload"]["id"]

    # A user may not broadcast into the chat channel: the policy lets them read it only.
    refused = httpx.post(f"{stack.api_url}/realtime/v1/api/broadcast",
                         headers={"Authorization": f"Bearer {owner.access_token}"},
                         json={"messages": [{"topic": topic, "event": "from-owner", "payload": {}, "private": True}]})
    assert refused.status_code == 202
    sent = httpx.post(f"{stack.api_url}/realtime/v1/api/broadcast",
                      headers={"Authorization": f"Bearer {stack.keys.api_key('service_role')}"},
                      json={"messages": [{"topic": topic, "event": "from-rest", "payload": {"n": 1}, "private": True}]})
    assert sent.status_code == 202 and sent.content == b""
    quiet_for(client.events, client.seen,
              lambda e: e["type"] == "broadcast" and e["payload"]["event"] == "from-owner",
              lambda e: e["type"] == "broadcast" and e["payload"]["event"] == "from-rest")


def test_client_to_client_broadcast_skips_the_sender_unless_self(
    stack: LocalStack, owner: ChatUser, stranger: ChatUser, realtime_clients: Subscribers,
) -> None:
    sender = python_subscriber(stack, realtime_clients, owner.access_token)
    echoing = python_subscriber(stack, realtime_clients, owner.access_token)
    listener = python_subscriber(stack, realtime_clients, stranger.access_token)
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
    stack: LocalStack, db: psycopg.Connection, owner: ChatUser, realtime_clients: Subscribers,
) -> None:
    assert stack.keys is not None
    client = python_subscriber(stack, realtime_clients, owner.access_token)
    client.subscribe("conversation", postgres=[{"event": "INSERT", "schema": "public", "table": "messages"}])
    client.subscribed("conversation")

    client.run(client.client.set_auth(user_token(stack.keys, owner.user_id, lifetime=7200)))
    message_id = insert_message(db, owner)

    client.expect(lambda e: (c := python_change(e)) is not None and c["record"]["id"] == message_id, "the row, after refresh")


def test_presence_track_reaches_every_member(stack: LocalStack, owner: ChatUser, stranger: ChatUser,
                                             realtime_clients: Subscribers) -> None:
    first = python_subscriber(stack, realtime_clients, owner.access_token)
    second = python_subscriber(stack, realtime_clients, stranger.access_token)
    first.subscribe("room", presence=True, config={"presence": {"key": "owner"}})
    second.subscribe("room", presence=True, config={"presence": {"key": "stranger"}})
    first.subscribed("room")
    second.subscribed("room")

    first.run(first.channels["room"].track({"typing": True}))

    synced = second.expect(lambda e: e["type"] == "presence_sync" and "owner" in e["state"], "owner's presence")
    assert synced["state"]["owner"][0]["typing"] is True
