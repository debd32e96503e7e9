"""Realtime as a frontend uses it: the real supabase-js (realtime-js 2.x, protocol 2.0.0 with its
binary broadcasts) under Node, signed in through the gateway's Auth, unchanged. The frontend
inserts its message and watches its conversation: the row, its status and the reply arrive with
no polling, another user sees none of it, and the private chat channel refuses an intruder."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from devstack.service_process import ServiceProcess
from devstack.stack import LocalStack
from tests.conftest import FakeModelControl, user_token
from tests.realtime_support import (
    ChatUser,
    NodeFrontend,
    Subscribers,
    chat_user,
    closing,
    frontend_plan,
    insert_message,
    node_or_skip,
    quiet_for,
)


@pytest.fixture(scope="module")
def node() -> str:
    return node_or_skip()


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


def frontend(node: str, subscribers: Subscribers, plan: dict[str, Any]) -> NodeFrontend:
    return subscribers.add(NodeFrontend(node, plan))


def change_of(event: dict[str, Any], type_: str, **record: Any) -> bool:
    if event["type"] != "postgres" or event["payload"]["eventType"] != type_:
        return False
    row = event["payload"]["new"] if type_ != "DELETE" else event["payload"]["old"]
    return all(row.get(key) == value for key, value in record.items())


def test_frontend_sees_its_message_and_the_reply_with_no_polling(
    node: str, live_service: ServiceProcess, fake_model: FakeModelControl, stack: LocalStack, alice: ChatUser,
    subscribers: Subscribers,
) -> None:
    browser = frontend(node, subscribers, frontend_plan(stack, alice, [{
        "name": f"conversation:{alice.conversation_id}",
        "postgres": [{"event": "*", "schema": "public", "table": "messages",
                      "filter": f"conversation_id=eq.{alice.conversation_id}"}],
    }]))
    browser.subscribed(f"conversation:{alice.conversation_id}")

    browser.command(cmd="insert", table="messages", row={"conversation_id": alice.conversation_id, "content": "Hi!"})
    inserted = browser.expect(lambda e: e["type"] == "inserted", "the insert's answer")
    assert inserted["error"] is None
    message_id = inserted["data"]["id"]

    browser.expect(lambda e: change_of(e, "INSERT", id=message_id, status="pending", content="Hi!"), "the user row")
    browser.expect(lambda e: change_of(e, "UPDATE", id=message_id, status="done"), "its status: done")
    reply = browser.expect(lambda e: change_of(e, "INSERT", reply_to=message_id), "the reply row")
    assert reply["payload"]["new"]["content"] == "Echo: Hi!"
    assert reply["payload"]["new"]["role"] == "assistant"


def test_another_frontend_sees_nothing_of_the_conversation(
    node: str, stack: LocalStack, db: psycopg.Connection, alice: ChatUser, bob: ChatUser, subscribers: Subscribers,
) -> None:
    intruder = frontend(node, subscribers, frontend_plan(stack, bob, [{
        "name": "snoop",
        "postgres": [{"event": "*", "schema": "public", "table": "messages",
                      "filter": f"conversation_id=eq.{alice.conversation_id}"},
                     {"event": "*", "schema": "public", "table": "messages"}],
    }]))
    intruder.subscribed("snoop")

    insert_message(db, alice, "alice only")
    bobs = insert_message(db, bob, "bob's marker")

    quiet_for(intruder.events, intruder.seen,
              lambda e: e["type"] == "postgres" and e["payload"]["new"].get("user_id") == alice.user_id,
              lambda e: change_of(e, "INSERT", id=bobs))


def test_the_private_chat_channel_refuses_another_user(
    node: str, stack: LocalStack, alice: ChatUser, bob: ChatUser, subscribers: Subscribers,
) -> None:
    channel = {"name": f"chat:{alice.conversation_id}", "config": {"private": True}, "broadcast": ["delta"]}
    owner = frontend(node, subscribers, frontend_plan(stack, alice, [channel]))
    intruder = frontend(node, subscribers, frontend_plan(stack, bob, [channel]))

    owner.subscribed(channel["name"])
    refused = intruder.expect(lambda e: e["type"] == "status" and e["status"] == "CHANNEL_ERROR", "the refusal")
    assert "You do not have permissions to read from this Channel topic" in refused["error"]


def test_broadcasts_from_sql_rest_and_another_client_arrive(
    node: str, stack: LocalStack, db: psycopg.Connection, alice: ChatUser, bob: ChatUser, subscribers: Subscribers,
) -> None:
    assert stack.keys is not None
    private = {"name": f"chat:{alice.conversation_id}", "config": {"private": True}, "broadcast": ["delta"]}
    lobby = {"name": "lobby", "config": {"broadcast": {"ack": True}}, "broadcast": ["wave"]}
    owner = frontend(node, subscribers, frontend_plan(stack, alice, [private, lobby]))
    other = frontend(node, subscribers, frontend_plan(stack, bob, [{**lobby, "config": {"broadcast": {"self": True}}}]))
    owner.subscribed(private["name"])
    owner.subscribed("lobby")
    other.subscribed("lobby")

    db.execute("select realtime.send('{\"text\": \"Hel\"}'::jsonb, 'delta', %s, true)", (private["name"],))
    from_sql = owner.expect(lambda e: e["type"] == "broadcast" and e["payload"]["payload"].get("text") == "Hel", "SQL")
    assert from_sql["payload"]["event"] == "delta"
    assert from_sql["payload"]["meta"]["id"]

    import httpx  # the REST call a backend makes, with the service-role key

    response = httpx.post(f"{stack.api_url}/realtime/v1/api/broadcast/{private['name']}/events/delta?private=true",
                          headers={"apikey": stack.keys.api_key("service_role")}, json={"text": "lo"})
    assert response.status_code == 202
    owner.expect(lambda e: e["type"] == "broadcast" and e["payload"]["payload"].get("text") == "lo", "REST")

    owner.command(cmd="send", channel="lobby", event="wave", payload={"hand": "left"})  # binary frame, with ack
    assert owner.expect(lambda e: e["type"] == "sent", "the ack")["result"] == "ok"
    other.expect(lambda e: e["type"] == "broadcast" and e["payload"]["payload"] == {"hand": "left"}, "alice's wave")
    other.command(cmd="send", channel="lobby", event="wave", payload={"hand": "right"})
    other.expect(lambda e: e["type"] == "broadcast" and e["payload"]["payload"] == {"hand": "right"}, "self: true")
    owner.expect(lambda e: e["type"] == "broadcast" and e["payload"]["payload"] == {"hand": "right"}, "bob's wave")
    assert not [e for e in owner.seen if e["type"] == "broadcast" and e["payload"]["payload"] == {"hand": "left"}]


def test_token_refresh_keeps_the_channel_and_an_expired_token_closes_it(
    node: str, stack: LocalStack, db: psycopg.Connection, alice: ChatUser, subscribers: Subscribers,
) -> None:
    assert stack.keys is not None
    browser = frontend(node, subscribers, frontend_plan(stack, alice, [{
        "name": "rows", "postgres": [{"event": "INSERT", "schema": "public", "table": "messages"}],
    }]))
    browser.subscribed("rows")

    browser.command(cmd="setAuth", token=user_token(stack.keys, alice.user_id, lifetime=7200))
    browser.expect(lambda e: e["type"] == "auth_set", "the new token")
    refreshed = insert_message(db, alice, "after refresh")
    browser.expect(lambda e: change_of(e, "INSERT", id=refreshed), "a row after the refresh")

    browser.command(cmd="setAuth", token=user_token(stack.keys, alice.user_id, lifetime=-30))
    system = browser.expect(lambda e: e["type"] == "system" and e["payload"].get("extension") == "system", "the error")
    assert system["payload"]["status"] == "error"
    assert system["payload"]["message"].startswith("Token has expired")
    browser.expect(lambda e: e["type"] == "status" and e["status"] == "CLOSED", "the channel closed")


def test_presence_track_resolves_and_syncs(node: str, stack: LocalStack, alice: ChatUser, bob: ChatUser,
                                           subscribers: Subscribers) -> None:
    room = {"name": "room", "presence": True, "config": {"presence": {"key": "alice"}}}
    first = frontend(node, subscribers, frontend_plan(stack, alice, [room]))
    second = frontend(node, subscribers, frontend_plan(stack, bob, [{**room, "config": {"presence": {"key": "bob"}}}]))
    first.subscribed("room")
    second.subscribed("room")

    first.command(cmd="track", channel="room", payload={"online_at": "now"})

    assert first.expect(lambda e: e["type"] == "tracked", "track's answer")["result"] == "ok"
    synced = second.expect(lambda e: e["type"] == "presence_sync" and "alice" in e["state"], "alice present")
    assert synced["state"]["alice"][0]["online_at"] == "now"
