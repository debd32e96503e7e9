"""POST /api/chat/<id> with `Accept: text/event-stream`, through the running service: deltas that
spell the reply and a `done` carrying the JSON answer; the same from a second instance whose own
workers cannot take the message (it hears the reply another instance generates from the
conversation's Realtime channel, piece by piece, where the row has only its first piece);
heartbeats on an idle stream; a caller that disconnects leaves the generation to finish; a stop
ends the stream; refusals before the stream are the JSON errors with their status codes."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from devstack.service_process import ServiceProcess
from devstack.stack import LocalStack
from tests.support.deliveries import deliver, message_event, pending_message, replies_to
from tests.support.polling import wait_until
from tests.support.processes import start_service
from tests.support.stack import UNCONFIGURED_WEBHOOK, FakeModelControl
from tests.support.streaming import reply_row, sse_events, words
from tests.support.users import SignedUpUser

SSE = {"Accept": "text/event-stream"}


def new_conversation(api: httpx.Client) -> str:
    response = api.post("/api/conversations", json={})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def stream_chat(api: httpx.Client, conversation_id: str, message: str) -> list[tuple[str, object]]:
    with api.stream("POST", f"/api/chat/{conversation_id}", json={"message": message}, headers=SSE) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return list(sse_events(response.iter_lines()))


def spelled(events: list[tuple[str, object]]) -> str:
    text = ""
    for kind, data in events:
        if kind == "delta":
            assert isinstance(data, dict)
            assert data["offset"] == len(text)  # no gap, no duplicate
            text += data["delta"]
    return text


def test_sse_deltas_spell_the_reply_and_done_carries_the_json_answer(
    live_service: ServiceProcess, fake_model: FakeModelControl, alice: SignedUpUser
) -> None:
    fake_model.set_pace(first_token_ms=20, tokens_per_second=200)
    api = alice.api(live_service.url)
    conversation_id = new_conversation(api)
    text = words(30, "sse")

    events = stream_chat(api, conversation_id, text)

    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "done" and kinds.count("done") == 1 and "error" not in kinds
    done = events[-1][1]
    assert isinstance(done, dict)
    assert done["response"] == f"Echo: {text}" == spelled(events)
    assert done["status"] == "done" and done["conversation_id"] == conversation_id
    assert {data["attempt"] for kind, data in events if kind == "delta"} == {1}  # type: ignore[index]
    history = api.get(f"/api/chat/{conversation_id}/history").json()["messages"]
    assert [m["id"] for m in history] == [done["message_id"], done["reply_id"]]


def test_without_the_accept_header_the_answer_is_json(live_service: ServiceProcess, alice: SignedUpUser) -> None:
    api = alice.api(live_service.url)
    response = api.post(f"/api/chat/{new_conversation(api)}", json={"message": "plain"}, headers={"Accept": "*/*"})

    assert response.headers["content-type"] == "application/json"
    assert response.json()["response"] == "Echo: plain"
    assert response.json()["status"] == "done"


def test_refusals_come_before_the_stream_as_json_errors(live_service: ServiceProcess, alice: SignedUpUser) -> None:
    api = alice.api(live_service.url)
    response = api.post(f"/api/chat/{uuid.uuid4()}", json={"message": "anyone?"}, headers=SSE)
    empty = api.post(f"/api/chat/{new_conversation(api)}", json={"message": ""}, headers=SSE)

    assert (response.status_code, response.json()["error"]["code"]) == (404, "not_found")
    assert empty.status_code == 400 and empty.headers["content-type"] == "application/json"


def test_a_model_failure_is_an_error_event(
    live_service: ServiceProcess, fake_model: FakeModelControl, alice: SignedUpUser
) -> None:
    fake_model.queue_faults({"kind": "bad_request"}, match="refuse me")
    api = alice.api(live_service.url)

    events = stream_chat(api, new_conversation(api), "refuse me")

    assert [kind for kind, _ in events] == ["error"]
    error = events[0][1]
    assert isinstance(error, dict) and error["error"]["code"] == "reply_failed"
    assert "rejected" in error["error"]["message"] and error["message_id"]


def test_a_caller_that_disconnects_leaves_the_reply_to_finish(
    live_service: ServiceProcess, fake_model: FakeModelControl, alice: SignedUpUser, db: psycopg.Connection
) -> None:
    fake_model.set_pace(first_token_ms=0, tokens_per_second=40)
    api = alice.api(live_service.url)
    text = words(40, "leave")
    with api.stream("POST", f"/api/chat/{new_conversation(api)}", json={"message": text}, headers=SSE) as response:
        events = sse_events(response.iter_lines())
        kind, _ = next(events)
        assert kind == "delta"
    # The connection is closed here, a second or so before the model is done.
    message_id = wait_until(lambda: db.execute(
        "select id::text from public.messages where role = 'user' and content = %s", (text,)).fetchone())[0]

    reply = wait_until(lambda: replies_to(db, message_id), deadline_seconds=15)
    assert reply[0][1] == f"Echo: {text}"
    request = wait_until(lambda: next((r for r in fake_model.requests(match=text) if r["stream_end"]), None))
    assert request["stream_end"] == "complete"


def test_a_stop_ends_the_stream_with_the_partial_reply(
    live_service: ServiceProcess, fake_model: FakeModelControl, alice: SignedUpUser, db: psycopg.Connection
) -> None:
    fake_model.set_pace(first_token_ms=0, tokens_per_second=20)
    api = alice.api(live_service.url)
    conversation_id = new_conversation(api)
    text = words(100, "halt")
    received: list[tuple[str, object]] = []
    with api.stream("POST", f"/api/chat/{conversation_id}", json={"message": text}, headers=SSE) as response:
        events = sse_events(response.iter_lines())
        received.append(next(events))
        message_id = wait_until(lambda: db.execute(
            "select id::text from public.messages where role = 'user' and content = %s", (text,)).fetchone())[0]
        stopped_at = time.monotonic()
        assert api.post(f"/api/chat/{conversation_id}/messages/{message_id}/stop").status_code == 200
        received.extend(events)  # ends when the server ends the stream
        ended_after = time.monotonic() - stopped_at

    done = received[-1]
    assert done[0] == "done" and isinstance(done[1], dict)
    assert done[1]["status"] == "stopped"
    assert f"Echo: {text}".startswith(done[1]["response"]) and len(done[1]["response"]) < len(f"Echo: {text}")
    assert done[1]["response"] == (reply_row(db, message_id) or ("",))[0]
    assert ended_after < 2.0


@pytest.fixture
def second_instance(stack: LocalStack, state_dir: Path) -> Iterator[ServiceProcess]:
    """Another instance with one reply worker and no queue, whose heartbeat is quick."""
    service = start_service(
        stack, state_dir, REPLY_CONCURRENCY="1", REPLY_QUEUE_SIZE="0", STREAM_SSE_HEARTBEAT_SECONDS="0.2",
        OPENAI_TIMEOUT_SECONDS="10", LEASE_SECONDS="60", REDRIVE_INTERVAL_SECONDS="0", CHAT_POLL_INTERVAL_SECONDS="0.1",
    )
    yield service
    service.stop()


def test_sse_from_a_second_instance_follows_the_reply_another_instance_generates(
    live_service: ServiceProcess, second_instance: ServiceProcess, fake_model: FakeModelControl, stack: LocalStack,
    db: psycopg.Connection, alice: SignedUpUser,
) -> None:
    # The second instance's only worker is busy with another message for a few seconds, so the
    # message is answered by the first instance, where the database's webhook goes.
    fake_model.queue_faults({"kind": "hang", "seconds": 3}, match="occupy")
    busy, busy_conversation = pending_message(db, "occupy the worker")
    stack.configure_webhook(f"{live_service.url}/webhooks/messages")
    assert deliver(second_instance.url, stack.webhook_secret, message_event(busy, busy_conversation)).status_code == 202
    wait_until(lambda: fake_model.requests(match="occupy"))
    fake_model.set_pace(first_token_ms=0, tokens_per_second=25)
    api = alice.api(second_instance.url)
    text = words(60, "far")

    events = stream_chat(api, new_conversation(api), text)

    done = events[-1][1]
    assert events[-1][0] == "done" and isinstance(done, dict)
    assert done["response"] == f"Echo: {text}"
    deltas = [data for kind, data in events if kind == "delta"]
    assert len(deltas) >= 2  # followed the checkpoints as they came, not only the end
    assert spelled(events) == done["response"]
    assert ("comment", "heartbeat") in events


@pytest.fixture
def instance_without_checkpoints(stack: LocalStack, state_dir: Path) -> Iterator[ServiceProcess]:
    """An instance whose reply rows hold only their first piece until the reply ends (its
    checkpoints are a minute apart), where the database's webhook goes for this test."""
    service = start_service(stack, state_dir, STREAM_CHECKPOINT_SECONDS="60", LEASE_SECONDS="60", REDRIVE_INTERVAL_SECONDS="0")
    yield service
    stack.configure_webhook(UNCONFIGURED_WEBHOOK)
    service.stop()


def test_sse_hears_a_reply_another_instance_generates_from_its_channel_ahead_of_the_row(
    instance_without_checkpoints: ServiceProcess, second_instance: ServiceProcess, fake_model: FakeModelControl,
    stack: LocalStack, db: psycopg.Connection, alice: SignedUpUser,
) -> None:
    # The second instance's only worker is busy, so the message is answered where the webhook goes.
    fake_model.queue_faults({"kind": "hang", "seconds": 3}, match="occupy")
    busy, busy_conversation = pending_message(db, "occupy the worker")
    stack.configure_webhook(f"{instance_without_checkpoints.url}/webhooks/messages")
    assert deliver(second_instance.url, stack.webhook_secret, message_event(busy, busy_conversation)).status_code == 202
    wait_until(lambda: fake_model.requests(match="occupy"))
    # The request joins the channel before its insert but never waits for the join: a model whose
    # first token took no time at all could broadcast before Realtime admitted it, and a follower
    # admitted late hears only later pieces, which start past its text (gaps, left to the row).
    fake_model.set_pace(first_token_ms=500, tokens_per_second=25)
    api = alice.api(second_instance.url)
    text = words(40, "near")
    events: list[tuple[str, object]] = []
    row_behind: list[tuple[int, int]] = []  # (characters the caller had, characters the row had) at a delta

    with api.stream("POST", f"/api/chat/{new_conversation(api)}", json={"message": text}, headers=SSE) as response:
        for kind, data in sse_events(response.iter_lines()):
            events.append((kind, data))
            if kind == "delta" and not row_behind:
                row = db.execute(
                    "select reply.content from public.messages reply join public.messages asked on reply.reply_to = asked.id"
                    " where asked.content = %s and reply.status = 'streaming'", (text,)
                ).fetchone()
                if row is not None and len(spelled(events)) > len(row[0]):
                    row_behind.append((len(spelled(events)), len(row[0])))

    done = events[-1][1]
    assert events[-1][0] == "done" and isinstance(done, dict)
    assert done["response"] == f"Echo: {text}" == spelled(events)
    # A piece the row did not have yet, while the reply was still streaming: only the channel brings that.
    assert row_behind, "every delta was one the reply row already held"
    assert [m["id"] for m in api.get(f"/api/chat/{done['conversation_id']}/history").json()["messages"]] == [
        done["message_id"], done["reply_id"]]
