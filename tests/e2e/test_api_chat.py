"""POST /api/chat/<id>: the synchronous door, through the running service and the local stack."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import psycopg

from devstack.service_process import ServiceProcess
from devstack.stack import LocalStack
from tests.support.polling import wait_until
from tests.support.processes import start_service
from tests.support.stack import FakeModelControl
from tests.support.users import SignedUpUser


def new_conversation(api: httpx.Client, **fields: str) -> str:
    response = api.post("/api/conversations", json=fields)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def message_count(db: psycopg.Connection) -> int:
    return int(db.execute("select count(*) from public.messages").fetchone()[0])


def test_happy_path_sends_and_reads_back(live_service: ServiceProcess, alice: SignedUpUser) -> None:
    api = alice.api(live_service.url)
    conversation_id = new_conversation(api, title="Trip", system_prompt="Be brief.")
    response = api.post(f"/api/chat/{conversation_id}", json={"message": "Where to?"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["response"] == "Echo: Where to?"
    assert body["conversation_id"] == conversation_id
    history = api.get(f"/api/chat/{conversation_id}/history").json()
    assert [(m["role"], m["content"]) for m in history["messages"]] == [
        ("user", "Where to?"), ("assistant", "Echo: Where to?")
    ]
    assert [m["id"] for m in history["messages"]] == [body["message_id"], body["reply_id"]]
    assert history["next_before"] is None


def test_other_users_conversation_is_404_and_nothing_is_inserted(
    live_service: ServiceProcess, alice: SignedUpUser, bob: SignedUpUser, db: psycopg.Connection
) -> None:
    conversation_id = new_conversation(alice.api(live_service.url))
    response = bob.api(live_service.url).post(f"/api/chat/{conversation_id}", json={"message": "let me in"})
    assert response.status_code == 404
    assert response.json()["error"] == {"code": "not_found", "message": "No such conversation."}
    assert message_count(db) == 0
    assert bob.api(live_service.url).get(f"/api/chat/{conversation_id}/history").status_code == 404


def test_unknown_conversation_is_404(live_service: ServiceProcess, alice: SignedUpUser) -> None:
    """A well-formed id the database does not know; ids that are not UUIDs are refused at the door
    (unit/test_doors.py: test_a_message_to_a_conversation_that_is_not_there_is_404)."""
    response = alice.api(live_service.url).post(f"/api/chat/{uuid.uuid4()}", json={"message": "hello?"})
    assert response.status_code == 404


def test_user_id_in_body_must_be_the_callers_own(
    live_service: ServiceProcess, alice: SignedUpUser, bob: SignedUpUser, db: psycopg.Connection
) -> None:
    api = alice.api(live_service.url)
    conversation_id = new_conversation(api)
    forged = api.post(f"/api/chat/{conversation_id}", json={"message": "as bob", "user_id": bob.user_id})
    assert forged.status_code == 403
    assert message_count(db) == 0
    own = api.post(f"/api/chat/{conversation_id}", json={"message": "as me", "user_id": alice.user_id})
    assert own.status_code == 200


def test_a_bad_body_gets_a_clear_error_and_inserts_nothing(
    live_service: ServiceProcess, alice: SignedUpUser, db: psycopg.Connection
) -> None:
    """One bad body through the running service; every other, with its status, is a row of
    unit/test_doors.py (test_bad_bodies_get_their_error_and_insert_nothing)."""
    api = alice.api(live_service.url)
    conversation_id = new_conversation(api)
    response = api.post(f"/api/chat/{conversation_id}", content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] and error["message"]
    assert message_count(db) == 0


def test_failed_model_gives_502_and_keeps_the_message(
    live_service: ServiceProcess, alice: SignedUpUser, db: psycopg.Connection, fake_model: FakeModelControl
) -> None:
    fake_model.queue_faults({"kind": "insufficient_quota"}, match="doomed")
    api = alice.api(live_service.url)
    conversation_id = new_conversation(api)
    response = api.post(f"/api/chat/{conversation_id}", json={"message": "doomed"})
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "reply_failed" and "quota" in error["message"]
    status, stored_error = db.execute(
        "select status, error from public.messages where id = %s", (error["message_id"],)
    ).fetchone()
    assert status == "failed" and stored_error == error["message"]


def test_retried_client_message_id_returns_the_first_reply(
    live_service: ServiceProcess, alice: SignedUpUser, db: psycopg.Connection, fake_model: FakeModelControl
) -> None:
    api = alice.api(live_service.url)
    conversation_id = new_conversation(api)
    key = str(uuid.uuid4())
    first = api.post(f"/api/chat/{conversation_id}", json={"message": "once", "client_message_id": key})
    again = api.post(f"/api/chat/{conversation_id}", json={"message": "once", "client_message_id": key})
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    assert message_count(db) == 2
    assert len(fake_model.requests(match="once")) == 1
    elsewhere = new_conversation(api)
    reused = api.post(f"/api/chat/{elsewhere}", json={"message": "once", "client_message_id": key})
    assert reused.status_code == 409


def test_timeout_gives_504_with_the_message_id_and_the_reply_comes_later(
    stack: LocalStack, state_dir: Path, alice: SignedUpUser, db: psycopg.Connection, fake_model: FakeModelControl
) -> None:
    impatient = start_service(stack, state_dir, CHAT_REPLY_TIMEOUT_SECONDS="0.5", OPENAI_TIMEOUT_SECONDS="3",
                              LEASE_SECONDS="12")
    try:
        stack.configure_webhook(f"{impatient.url}/webhooks/messages")
        fake_model.queue_faults({"kind": "hang", "seconds": 1.5}, match="slow one")
        api = alice.api(impatient.url)
        conversation_id = new_conversation(api)
        response = api.post(f"/api/chat/{conversation_id}", json={"message": "slow one"})
        assert response.status_code == 504
        message_id = response.json()["error"]["message_id"]
        # The reply's row exists from its first streamed token: wait for it to settle, not to appear.
        history = wait_until(
            lambda: [m for m in api.get(f"/api/chat/{conversation_id}/history").json()["messages"]
                     if m["reply_to"] == message_id and m["status"] != "streaming"]
        )
        assert (history[0]["status"], history[0]["content"]) == ("done", "Echo: slow one")
    finally:
        impatient.stop()


def test_reply_written_by_another_instance_wakes_the_waiting_request(
    stack: LocalStack, state_dir: Path, live_service: ServiceProcess, alice: SignedUpUser, db: psycopg.Connection,
    fake_model: FakeModelControl,
) -> None:
    waiting_instance = start_service(stack, state_dir)
    try:
        stack.configure_webhook(f"{live_service.url}/webhooks/messages")  # the webhook goes to the other one
        api = alice.api(waiting_instance.url)
        conversation_id = new_conversation(api)
        response = api.post(f"/api/chat/{conversation_id}", json={"message": "cross-instance"})
        assert response.status_code == 200, response.text
        assert response.json()["response"] == "Echo: cross-instance"
    finally:
        waiting_instance.stop()
    assert len(fake_model.requests(match="cross-instance")) == 1


def test_rate_limit_is_shared_by_instances_and_answers_429(
    stack: LocalStack, state_dir: Path, alice: SignedUpUser, db: psycopg.Connection, fake_model: FakeModelControl
) -> None:
    """The limit is the database's (counted at insert), so every instance sees the same count."""
    db.execute(
        "insert into private.user_quotas (user_id, messages_per_window, window_seconds) values (%s, 2, 60)",
        (alice.user_id,),
    )
    limited = [start_service(stack, state_dir) for _ in range(2)]
    try:
        stack.configure_webhook(f"{limited[0].url}/webhooks/messages")
        conversation_id = new_conversation(alice.api(limited[0].url))
        statuses = [alice.api(instance.url).post(f"/api/chat/{conversation_id}", json={"message": f"m{n}"})
                    for n, instance in enumerate([limited[0], limited[1], limited[1]])]
        assert [response.status_code for response in statuses] == [200, 200, 429]
        assert int(statuses[2].headers["Retry-After"]) >= 1
        error = statuses[2].json()["error"]
        assert (error["code"], error["limit"]) == ("rate_limited", "messages_per_window")
        assert "at most 2 per 60 s" in error["message"] and "resets at" in error["message"]
        assert message_count(db) == 4
        assert len(fake_model.requests()) == 2
    finally:
        for instance in limited:
            instance.stop()
