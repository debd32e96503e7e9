"""Realtime as a frontend uses it: the real supabase-js (realtime-js 2.x, protocol 2.0.0 with its
binary broadcasts) under Node, signed in through the gateway's Auth, unchanged. The frontend
inserts its message and watches its conversation: the row, its status and the reply arrive with
no polling, another user sees none of it, and the private chat channel refuses an intruder."""

from __future__ import annotations

import psycopg

from devstack.stack import LocalStack
from tests.support.realtime import (
    ChatUser,
    Subscribers,
    frontend_plan,
    insert_message,
    js_change,
    node_frontend,
    quiet_for,
)
from tests.support.users import user_token


def test_another_frontend_sees_nothing_of_the_conversation(
    node_binary: str, stack: LocalStack, db: psycopg.Connection, owner: ChatUser, stranger: ChatUser,
    realtime_clients: Subscribers,
) -> None:
    intruder = node_frontend(node_binary, realtime_clients, frontend_plan(stack, stranger, [{
        "name": "snoop",
        "postgres": [{"event": "*", "schema": "public", "table": "messages",
                      "filter": f"conversation_id=eq.{owner.conversation_id}"},
                     {"event": "*", "schema": "public", "table": "messages"}],
    }]))
    intruder.subscribed("snoop")

    insert_message(db, owner, "owner only")
    strangers = insert_message(db, stranger, "stranger's marker")

    quiet_for(intruder.events, intruder.seen,
              lambda e: e["type"] == "postgres" and e["payload"]["new"].get("user_id") == owner.user_id,
              lambda e: js_change(e, "INSERT", id=strangers))


def test_the_private_chat_channel_refuses_another_user(
    node_binary: str, stack: LocalStack, owner: ChatUser, stranger: ChatUser, realtime_clients: Subscribers,
) -> None:
    channel = {"name": f"chat:{owner.conversation_id}", "config": {"private": True}, "broadcast": ["delta"]}
    owner_browser = node_frontend(node_binary, realtime_clients, frontend_plan(stack, owner, [channel]))
    intruder = node_frontend(node_binary, realtime_clients, frontend_plan(stack, stranger, [channel]))

    owner_browser.subscribed(channel["name"])
    refused = intruder.expect(lambda e: e["type"] == "status" and e["status"] == "CHANNEL_ERROR", "the refusal")
    assert "You do not have permissions to read from this Channel topic" in refused["error"]


def test_broadcasts_from_sql_rest_and_another_client_arrive(
    node_binary: str, stack: LocalStack, db: psycopg.Connection, owner: ChatUser, stranger: ChatUser,
    realtime_clients: Subscribers,
) -> None:
    assert stack.keys is not None
    private = {"name": f"chat:{owner.conversation_id}", "config": {"private": True}, "broadcast": ["delta"]}
    lobby = {"name": "lobby", "config": {"broadcast": {"ack": True}}, "broadcast": ["wave"]}
    owner_browser = node_frontend(node_binary, realtime_clients, frontend_plan(stack, owner, [private, lobby]))
    echoing_lobby = {**lobby, "config": {"broadcast": {"self": True}}}
    other = node_frontend(node_binary, realtime_clients, frontend_plan(stack, stranger, [echoing_lobby]))
    owner_browser.subscribed(private["name"])
    owner_browser.subscribed("lobby")
    other.subscribed("lobby")

    db.execute("select realtime.send('{\"text\": \"Hel\"}'::jsonb, 'delta', %s, true)", (private["name"],))
    from_sql = owner_browser.expect(lambda e: e["type"] == "broadcast" and e["payload"]["payload"].get("text") == "Hel", "SQL")
    assert from_sql["payload"]["event"] == "delta"
    assert from_sql["payload"]["meta"]["id"]

    import httpx  # the REST call a backend makes, with the service-role key

    response = httpx.post(f"{stack.api_url}/realtime/v1/api/broadcast/{private['name']}/events/delta?private=true",
                          headers={"apikey": stack.keys.api_key("service_role")}, json={"text": "lo"})
    assert response.status_code == 202
    owner_browser.expect(lambda e: e["type"] == "broadcast" and e["payload"]["payload"].get("text") == "lo", "REST")

    owner_browser.command(cmd="send", channel="lobby", event="wave", payload={"hand": "left"})  # binary frame, with ack
    assert owner_browser.expect(lambda e: e["type"] == "sent", "the ack")["result"] == "ok"
    other.expect(lambda e: e["type"] == "broadcast" and e["payload"]["payload"] == {"hand": "left"}, "owner's wave")
    other.command(cmd="send", channel="lobby", event="wave", payload={"hand": "right"})
    other.expect(lambda e: e["type"] == "broadcast" and e["payload"]["payload"] == {"hand": "right"}, "self: true")
    owner_browser.expect(lambda e: e["type"] == "broadcast" and e["payload"]["payload"] == {"hand": "right"}, "stranger's wave")
    assert not [e for e in owner_browser.seen if e["type"] == "broadcast" and e["payload"]["payload"] == {"hand": "left"}]


def test_token_refresh_keeps_the_channel_and_an_expired_token_closes_it(
    node_binary: str, stack: LocalStack, db: psycopg.Connection, owner: ChatUser, realtime_clients: Subscribers,
) -> None:
    assert stack.keys is not None
    browser = node_frontend(node_binary, realtime_clients, frontend_plan(stack, owner, [{
        "name": "rows", "postgres": [{"event": "INSERT", "schema": "public", "table": "messages"}],
    }]))
    browser.subscribed("rows")

    browser.command(cmd="setAuth", token=user_token(stack.keys, owner.user_id, lifetime=7200))
    browser.expect(lambda e: e["type"] == "auth_set", "the new token")
    refreshed = insert_message(db, owner, "after refresh")
    browser.expect(lambda e: js_change(e, "INSERT", id=refreshed), "a row after the refresh")

    browser.command(cmd="setAuth", token=user_token(stack.keys, owner.user_id, lifetime=-30))
    system = browser.expect(lambda e: e["type"] == "system" and e["payload"].get("extension") == "system", "the error")
    assert system["payload"]["status"] == "error"
    assert system["payload"]["message"].startswith("Token has expired")
    browser.expect(lambda e: e["type"] == "status" and e["status"] == "CLOSED", "the channel closed")


def test_presence_track_resolves_and_syncs(node_binary: str, stack: LocalStack, owner: ChatUser, stranger: ChatUser,
                                           realtime_clients: Subscribers) -> None:
    room = {"name": "room", "presence": True, "config": {"presence": {"key": "owner"}}}
    first = node_frontend(node_binary, realtime_clients, frontend_plan(stack, owner, [room]))
    their_room = {**room, "config": {"presence": {"key": "stranger"}}}
    second = node_frontend(node_binary, realtime_clients, frontend_plan(stack, stranger, [their_room]))
    first.subscribed("room")
    second.subscribed("room")

    first.command(cmd="track", channel="room", payload={"online_at": "now"})

    assert first.expect(lambda e: e["type"] == "tracked", "track's answer")["result"] == "ok"
    synced = second.expect(lambda e: e["type"] == "presence_sync" and "owner" in e["state"], "owner present")
    assert synced["state"]["owner"][0]["online_at"] == "now"
