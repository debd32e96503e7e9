"""Streamed replies end to end, against the stack and the service as the Procfile starts it: the
deltas on the private channel `chat:<conversation_id>` (real supabase-js under Node, and
supabase-py's realtime client) spell the reply row's final text; a stranger cannot join; a client
that joins mid-stream converges through the row plus later deltas; a stop from a frontend (RPC
under RLS) or the REST door closes the fake model's stream within a second; a provider error
after the first token keeps the partial text and marks it failed."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import psycopg

from devstack.service_process import ServiceProcess
from devstack.stack import LocalStack
from tests.support.polling import wait_until
from tests.support.processes import start_service
from tests.support.realtime import (
    ChatUser,
    Subscribers,
    frontend_plan,
    insert_message,
    node_frontend,
    python_subscriber,
)
from tests.support.stack import FakeModelControl
from tests.support.streaming import ResumedReply, replies, reply_row, words

REPLY_EVENTS = ["reply_delta", "reply_done", "reply_failed", "reply_stopped"]


def chat_channel(user: ChatUser) -> dict[str, object]:
    return {"name": f"chat:{user.conversation_id}", "config": {"private": True}, "broadcast": REPLY_EVENTS}


def broadcast_of(event: dict, name: str, message_id: str) -> bool:
    return (event["type"] == "broadcast" and event["payload"]["event"] == name
            and event["payload"]["payload"]["message_id"] == message_id)


def deltas_of(seen: list[dict], message_id: str) -> list[dict]:
    return [e["payload"]["payload"] for e in seen if broadcast_of(e, "reply_delta", message_id)]


def test_deltas_on_the_private_channel_spell_the_reply_python_client(
    live_service: ServiceProcess, fake_model: FakeModelControl, stack: LocalStack, db: psycopg.Connection,
    owner: ChatUser, realtime_clients: Subscribers,
) -> None:
    fake_model.set_pace(first_token_ms=50, tokens_per_second=100)
    client = python_subscriber(stack, realtime_clients, owner.access_token)
    client.subscribe(f"chat:{owner.conversation_id}", config={"private": True}, broadcast=REPLY_EVENTS)
    client.subscribed(f"chat:{owner.conversation_id}")
    text = words(40)

    message_id = insert_message(db, owner, text)

    done = client.expect(lambda e: broadcast_of(e, "reply_done", message_id), "reply_done")
    resumed = ResumedReply()
    for delta in deltas_of(client.seen, message_id):
        resumed.apply(delta)
    content, status, attempt, _, reply_id = reply_row(db, message_id) or ("", "", None, None, "")
    assert (content, status) == (f"Echo: {text}", "done")
    assert resumed.text == content
    assert done["payload"]["payload"] == {"message_id": message_id, "reply_id": reply_id, "attempt": attempt}
    deltas = deltas_of(client.seen, message_id)
    assert {d["reply_id"] for d in deltas} == {reply_id}
    assert 2 <= len(deltas) < 41  # batched: fewer broadcasts than the model's 41 pieces
    assert replies(db, message_id) == 1


def test_deltas_spell_the_reply_in_supabase_js_and_a_stranger_cannot_join(
    node_binary: str, live_service: ServiceProcess, fake_model: FakeModelControl, stack: LocalStack,
    db: psycopg.Connection, owner: ChatUser, stranger: ChatUser, realtime_clients: Subscribers,
) -> None:
    fake_model.set_pace(first_token_ms=50, tokens_per_second=100)
    browser = node_frontend(node_binary, realtime_clients, frontend_plan(stack, owner, [chat_channel(owner)]))
    browser.subscribed(f"chat:{owner.conversation_id}")
    intruder = node_frontend(node_binary, realtime_clients, frontend_plan(stack, stranger, [chat_channel(owner)]))
    refused = intruder.expect(lambda e: e["type"] == "status" and e["status"] == "CHANNEL_ERROR", "the stranger refused")
    assert "Unauthorized" in (refused["error"] or "")
    text = words(30, "js")

    browser.command(cmd="insert", table="messages", row={"conversation_id": owner.conversation_id, "content": text})
    message_id = browser.expect(lambda e: e["type"] == "inserted", "the insert")["data"]["id"]

    browser.expect(lambda e: broadcast_of(e, "reply_done", message_id), "reply_done")
    resumed = ResumedReply()
    for event in browser.seen:
        if broadcast_of(event, "reply_delta", message_id):
            resumed.apply(event["payload"]["payload"])
    assert resumed.text == f"Echo: {text}" == (reply_row(db, message_id) or ("",))[0]
    assert not [e for e in intruder.seen if e["type"] == "broadcast"]


def test_a_client_joining_mid_stream_converges_through_the_row_and_later_deltas(
    live_service: ServiceProcess, fake_model: FakeModelControl, stack: LocalStack, db: psycopg.Connection,
    owner: ChatUser, realtime_clients: Subscribers,
) -> None:
    fake_model.set_pace(first_token_ms=0, tokens_per_second=25)
    text = words(60, "late")
    message_id = insert_message(db, owner, text)
    # Reload in the middle: the row holds a checkpoint already, and more text is coming.
    wait_until(lambda: (row := reply_row(db, message_id)) and row[1] == "streaming" and len(row[0]) > 20)

    client = python_subscriber(stack, realtime_clients, owner.access_token)
    client.subscribe(f"chat:{owner.conversation_id}", config={"private": True}, broadcast=REPLY_EVENTS)
    client.subscribed(f"chat:{owner.conversation_id}")
    content, status, attempt, _, _ = reply_row(db, message_id) or ("", "", 0, None, "")
    assert status == "streaming" and len(content) < len(f"Echo: {text}")
    resumed = ResumedReply(text=content, attempt=attempt or 0)

    client.expect(lambda e: broadcast_of(e, "reply_done", message_id), "reply_done", deadline_seconds=20)
    for delta in deltas_of(client.seen, message_id):
        resumed.apply(delta)  # raises on a gap
    assert resumed.text == f"Echo: {text}" == (reply_row(db, message_id) or ("",))[0]
    assert resumed.applied  # it did need later deltas


def stop_counted_at_the_fake(fake_model: FakeModelControl, match: str, stopped_at: float) -> dict:
    request = wait_until(lambda: next((r for r in fake_model.requests(match=match) if r["stream_end"]), None))
    assert request["stream_end"] == "client_closed"
    assert request["stream_ended_at"] - stopped_at < 1.0
    return request


def test_stop_from_a_frontend_closes_the_models_stream_within_a_second(
    node_binary: str, live_service: ServiceProcess, fake_model: FakeModelControl, stack: LocalStack,
    db: psycopg.Connection, owner: ChatUser, realtime_clients: Subscribers,
) -> None:
    fake_model.set_pace(first_token_ms=0, tokens_per_second=20)
    browser = node_frontend(node_binary, realtime_clients, frontend_plan(stack, owner, [chat_channel(owner)]))
    browser.subscribed(f"chat:{owner.conversation_id}")
    text = words(100, "stop")
    browser.command(cmd="insert", table="messages", row={"conversation_id": owner.conversation_id, "content": text})
    message_id = browser.expect(lambda e: e["type"] == "inserted", "the insert")["data"]["id"]
    browser.expect(lambda e: broadcast_of(e, "reply_delta", message_id), "the first delta")

    stopped_at = time.time()
    browser.command(cmd="rpc", fn="stop_reply", args={"message_id": message_id})
    answer = browser.expect(lambda e: e["type"] == "rpc", "stop_reply's answer")

    assert answer["error"] is None and answer["data"]["stop_requested"] is True
    request = stop_counted_at_the_fake(fake_model, text, stopped_at)
    stopped = browser.expect(lambda e: broadcast_of(e, "reply_stopped", message_id), "reply_stopped")
    content, _, attempt, _, reply_id = wait_until(lambda: (r := reply_row(db, message_id)) and r[1] == "stopped" and r)
    assert stopped["payload"]["payload"] == {"message_id": message_id, "reply_id": reply_id, "attempt": attempt}
    assert f"Echo: {text}".startswith(content) and 0 < len(content) < len(f"Echo: {text}")
    assert request["tokens_sent"] < 101
    assert db.execute("select status from public.messages where id = %s", (message_id,)).fetchone() == ("stopped",)


def test_stop_through_the_rest_door_closes_the_models_stream_within_a_second(
    live_service: ServiceProcess, fake_model: FakeModelControl, db: psycopg.Connection, owner: ChatUser,
) -> None:
    fake_model.set_pace(first_token_ms=0, tokens_per_second=20)
    text = words(100, "reststop")
    message_id = insert_message(db, owner, text)
    wait_until(lambda: reply_row(db, message_id))

    stopped_at = time.time()
    response = httpx.post(
        f"{live_service.url}/api/chat/{owner.conversation_id}/messages/{message_id}/stop",
        headers={"Authorization": f"Bearer {owner.access_token}"},
    )

    assert response.status_code == 200
    assert response.json()["message_id"] == message_id
    stop_counted_at_the_fake(fake_model, text, stopped_at)
    row = wait_until(lambda: (r := reply_row(db, message_id)) and r[1] == "stopped" and r)
    assert f"Echo: {text}".startswith(row[0])


def test_stop_of_someone_elses_or_a_settled_message(
    live_service: ServiceProcess, fake_model: FakeModelControl, db: psycopg.Connection, owner: ChatUser,
    stranger: ChatUser,
) -> None:
    message_id = insert_message(db, owner, "quick one")
    wait_until(lambda: (r := reply_row(db, message_id)) and r[1] == "done")
    door = f"{live_service.url}/api/chat/{owner.conversation_id}/messages/{message_id}/stop"

    settled = httpx.post(door, headers={"Authorization": f"Bearer {owner.access_token}"})
    foreign = httpx.post(door, headers={"Authorization": f"Bearer {stranger.access_token}"})
    missing = httpx.post(door.replace(message_id, str(uuid.uuid4())), headers={"Authorization": f"Bearer {owner.access_token}"})

    assert (settled.status_code, settled.json()["status"]) == (200, "done")
    assert (foreign.status_code, foreign.json()["error"]["code"]) == (404, "not_found")
    assert missing.status_code == 404
    assert (reply_row(db, message_id) or ("",))[0] == "Echo: quick one"


def test_a_provider_error_after_the_first_token_keeps_the_partial_reply_and_fails_it(
    live_service: ServiceProcess, fake_model: FakeModelControl, stack: LocalStack, db: psycopg.Connection,
    owner: ChatUser, realtime_clients: Subscribers,
) -> None:
    text = words(20, "broken")
    fake_model.queue_faults({"kind": "stream_error", "after_tokens": 4}, match=text)
    client = python_subscriber(stack, realtime_clients, owner.access_token)
    client.subscribe(f"chat:{owner.conversation_id}", config={"private": True}, broadcast=REPLY_EVENTS)
    client.subscribed(f"chat:{owner.conversation_id}")

    message_id = insert_message(db, owner, text)

    failed = client.expect(lambda e: broadcast_of(e, "reply_failed", message_id), "reply_failed")
    content, status, attempt, error, reply_id = reply_row(db, message_id) or ("", "", None, None, "")
    assert (content, status) == ("Echo: broken0 broken1 broken2 ", "failed")
    assert error == "The AI model's reply broke off. Please send your message again."
    assert failed["payload"]["payload"] == {"message_id": message_id, "reply_id": reply_id, "attempt": attempt,
                                            "error": error}
    assert db.execute("select status, error from public.messages where id = %s", (message_id,)).fetchone() == (
        "failed", error)
    assert len(fake_model.requests(match=text)) == 1  # not retried after the first token


def test_sigkill_mid_stream_ends_in_exactly_one_final_reply_of_a_new_attempt(
    stack: LocalStack, state_dir: Path, db: psycopg.Connection, fake_model: FakeModelControl, owner: ChatUser,
    realtime_clients: Subscribers,
) -> None:
    fake_model.set_pace(first_token_ms=0, tokens_per_second=20)
    text = words(80, "killed")
    crashing = start_service(stack, state_dir, LEASE_SECONDS="4", REDRIVE_INTERVAL_SECONDS="0")
    stack.configure_webhook(f"{crashing.url}/webhooks/messages")
    client = python_subscriber(stack, realtime_clients, owner.access_token)
    client.subscribe(f"chat:{owner.conversation_id}", config={"private": True}, broadcast=REPLY_EVENTS)
    client.subscribed(f"chat:{owner.conversation_id}")
    message_id = insert_message(db, owner, text)
    wait_until(lambda: (row := reply_row(db, message_id)) and len(row[0]) > 10)

    crashing.kill()  # SIGKILL mid-stream: the row is left streaming, attempt 1
    assert (reply_row(db, message_id) or ("", "", 0))[1:3] == ("streaming", 1)
    survivor = start_service(stack, state_dir, REDRIVE_GRACE_SECONDS="0", REDRIVE_INTERVAL_SECONDS="0.2")
    try:
        fake_model.set_pace(first_token_ms=0, tokens_per_second=400)
        client.expect(lambda e: broadcast_of(e, "reply_done", message_id), "reply_done", deadline_seconds=20)
    finally:
        survivor.stop()

    content, status, attempt, _, _ = reply_row(db, message_id) or ("", "", 0, None, "")
    assert (content, status, attempt) == (f"Echo: {text}", "done", 2)
    assert replies(db, message_id) == 1
    resumed = ResumedReply()
    for delta in deltas_of(client.seen, message_id):
        resumed.apply(delta)  # attempt 2 restarts the text a client holds from attempt 1
    assert resumed.text == content and resumed.attempt == 2
    assert {d["attempt"] for d in deltas_of(client.seen, message_id)} == {1, 2}
