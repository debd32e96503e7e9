"""The product's frontend path end to end: a frontend inserts its message and watches its
conversation through Realtime; its row, the status change and the service's reply arrive with no
polling. Driven by the real supabase-js under Node (what the chat frontend uses) and by
supabase-py's `realtime` client, against the stack and the service as the Procfile starts it."""

from __future__ import annotations

import psycopg

from devstack.service_process import ServiceProcess
from devstack.stack import LocalStack
from tests.support.realtime import (
    ChatUser,
    Subscribers,
    frontend_plan,
    insert_message,
    js_change,
    node_frontend,
    python_change,
    python_subscriber,
)
from tests.support.stack import FakeModelControl


def test_frontend_sees_its_message_and_the_reply_with_no_polling(
    node_binary: str, live_service: ServiceProcess, fake_model: FakeModelControl, stack: LocalStack, owner: ChatUser,
    realtime_clients: Subscribers,
) -> None:
    browser = node_frontend(node_binary, realtime_clients, frontend_plan(stack, owner, [{
        "name": f"conversation:{owner.conversation_id}",
        "postgres": [{"event": "*", "schema": "public", "table": "messages",
                      "filter": f"conversation_id=eq.{owner.conversation_id}"}],
    }]))
    browser.subscribed(f"conversation:{owner.conversation_id}")

    browser.command(cmd="insert", table="messages", row={"conversation_id": owner.conversation_id, "content": "Hi!"})
    inserted = browser.expect(lambda e: e["type"] == "inserted", "the insert's answer")
    assert inserted["error"] is None
    message_id = inserted["data"]["id"]

    browser.expect(lambda e: js_change(e, "INSERT", id=message_id, status="pending", content="Hi!"), "the user row")
    browser.expect(lambda e: js_change(e, "UPDATE", id=message_id, status="done"), "its status: done")
    reply = browser.expect(lambda e: js_change(e, "INSERT", reply_to=message_id), "the reply row")
    assert reply["payload"]["new"]["content"] == "Echo: Hi!"
    assert reply["payload"]["new"]["role"] == "assistant"


def test_subscriber_sees_its_message_its_status_and_the_reply(
    live_service: ServiceProcess, fake_model: FakeModelControl, stack: LocalStack, db: psycopg.Connection,
    owner: ChatUser, realtime_clients: Subscribers,
) -> None:
    client = python_subscriber(stack, realtime_clients, owner.access_token)
    client.subscribe("conversation", postgres=[
        {"event": "*", "schema": "public", "table": "messages", "filter": f"conversation_id=eq.{owner.conversation_id}"},
    ])
    client.subscribed("conversation")
    client.expect(lambda e: e["type"] == "system" and e["payload"]["message"] == "Subscribed to PostgreSQL",
                  "postgres changes subscribed")

    message_id = insert_message(db, owner, "hello realtime")

    inserted = client.expect(lambda e: (c := python_change(e, "INSERT")) is not None and c["record"]["id"] == message_id,
                             "the user row")
    assert inserted["payload"]["data"]["record"]["content"] == "hello realtime"
    assert inserted["payload"]["data"]["record"]["status"] == "pending"
    done = client.expect(lambda e: (c := python_change(e, "UPDATE")) is not None and c["record"]["id"] == message_id
                         and c["record"]["status"] == "done", "the status update to done")
    assert done["payload"]["data"]["old_record"] == {"id": message_id}  # REPLICA IDENTITY DEFAULT: the key only
    reply = client.expect(lambda e: (c := python_change(e, "INSERT")) is not None and c["record"]["reply_to"] == message_id,
                          "the assistant reply row")
    assert reply["payload"]["data"]["record"]["role"] == "assistant"
    assert reply["payload"]["data"]["record"]["content"] == "Echo: hello realtime"
