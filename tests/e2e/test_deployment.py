"""The production shape: gunicorn as the Procfile starts it, several workers and instances on one
database, and SIGTERM during a generation, which must end with the reply written exactly once."""

from __future__ import annotations

import signal
import uuid
from pathlib import Path

import psycopg

from devstack.stack import LocalStack
from http_common.service import chat_service
from server import create_app
from server.settings import load_settings
from tests.support.database import insert_user
from tests.support.deliveries import message_event, message_state, pending_message, replies_to, signed_headers
from tests.support.polling import wait_until
from tests.support.processes import service_env, start_service
from tests.support.stack import FakeModelControl
from tests.support.users import sign_up


def test_procfile_service_with_several_workers_answers_a_conversation(
    stack: LocalStack, state_dir: Path, fake_model: FakeModelControl
) -> None:
    service = start_service(stack, state_dir, WEB_CONCURRENCY="3", GUNICORN_THREADS="4")
    try:
        stack.configure_webhook(f"{service.url}/webhooks/messages")
        user = sign_up(stack)
        api = user.api(service.url)
        conversation = api.post("/api/conversations", json={"title": "deploy"}).json()["id"]
        answers = [api.post(f"/api/chat/{conversation}", json={"message": f"turn {n}"}).json()["response"]
                   for n in range(6)]
    finally:
        assert service.stop() == 0
    assert answers == [f"Echo: turn {n}" for n in range(6)]


def test_sigterm_during_a_generation_drains_and_writes_the_reply_once(
    stack: LocalStack, state_dir: Path, db: psycopg.Connection, fake_model: FakeModelControl
) -> None:
    text = f"drain {uuid.uuid4()}"
    fake_model.queue_faults({"kind": "hang", "seconds": 1.5}, match=text)
    service = start_service(stack, state_dir, GRACEFUL_TIMEOUT="15", OPENAI_TIMEOUT_SECONDS="5", LEASE_SECONDS="20")
    stack.configure_webhook(f"{service.url}/webhooks/messages")
    message_id, _ = _user_message(db, text)
    wait_until(lambda: fake_model.requests(match=text))
    assert service.process is not None
    service.process.send_signal(signal.SIGTERM)
    assert service.process.wait(timeout=20) == 0
    assert len(replies_to(db, message_id)) == 1
    assert message_state(db, message_id)[0] == "done"


def test_sigterm_with_a_generation_longer_than_the_grace_hands_it_to_the_next_instance(
    stack: LocalStack, state_dir: Path, db: psycopg.Connection, fake_model: FakeModelControl
) -> None:
    text = f"too slow {uuid.uuid4()}"
    fake_model.queue_faults({"kind": "hang", "seconds": 6}, match=text)
    leaving = start_service(stack, state_dir, GRACEFUL_TIMEOUT="3", OPENAI_TIMEOUT_SECONDS="10", LEASE_SECONDS="60",
                            MODEL_MAX_ATTEMPTS="1")
    stack.configure_webhook(f"{leaving.url}/webhooks/messages")
    message_id, _ = _user_message(db, text)
    wait_until(lambda: fake_model.requests(match=text))
    assert leaving.process is not None
    leaving.process.send_signal(signal.SIGTERM)
    leaving.process.wait(timeout=20)

    # Released, not abandoned: any instance's next sweep takes it without waiting for the 60 s lease.
    arriving = start_service(stack, state_dir, REDRIVE_GRACE_SECONDS="0", REDRIVE_INTERVAL_SECONDS="0.2")
    try:
        wait_until(lambda: message_state(db, message_id)[0] == "done", deadline_seconds=15)
    finally:
        arriving.stop()
    assert len(replies_to(db, message_id)) == 1
    assert message_state(db, message_id) == ("done", None, 1), "the interrupted attempt is not counted"
    assert len(fake_model.requests(match=text)) == 2, "one interrupted generation, one that answered"


def test_two_instances_on_one_database_answer_200_messages_exactly_once(
    stack: LocalStack, state_dir: Path, db: psycopg.Connection, fake_model: FakeModelControl
) -> None:
    instances = [start_service(stack, state_dir, WEB_CONCURRENCY="2") for _ in range(2)]
    try:
        user = insert_user(db)
        conversation = db.execute(
            "insert into public.conversations (user_id) values (%s) returning id", (user,)
        ).fetchone()[0]
        for n in range(200):
            if n % 50 == 0:
                stack.configure_webhook(f"{instances[(n // 50) % 2].url}/webhooks/messages")
            db.execute("insert into public.messages (conversation_id, user_id, content) values (%s, %s, %s)",
                       (conversation, user, f"message {n}"))
        wait_until(lambda: _count(db, "role = 'user' and status = 'done'") == 200, deadline_seconds=60)
    finally:
        for instance in instances:
            instance.stop()
    assert _count(db, "role = 'assistant'") == 200
    assert _count(db, "role = 'assistant'", distinct="reply_to") == 200


def test_webhooks_reaching_a_stopping_instance_get_503(stack: LocalStack, db: psycopg.Connection) -> None:
    settings = load_settings({name.lower(): value for name, value in service_env(stack).items()})
    app = create_app(settings, start_background=False)
    chat_service(app).begin_shutdown()
    message_id, conversation_id = pending_message(db)
    body = message_event(message_id, conversation_id)
    response = app.test_client().post("/webhooks/messages", data=body, headers=signed_headers(stack.webhook_secret, body))
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "shutting_down"
    assert response.headers["Retry-After"]
    assert message_state(db, message_id) == ("pending", None, 0)


def _user_message(db: psycopg.Connection, text: str) -> tuple[str, str]:
    user = insert_user(db)
    conversation = db.execute("insert into public.conversations (user_id) values (%s) returning id", (user,)).fetchone()[0]
    message = db.execute(
        "insert into public.messages (conversation_id, user_id, content) values (%s, %s, %s) returning id",
        (conversation, user, text),
    ).fetchone()[0]
    return str(message), str(conversation)


def _count(db: psycopg.Connection, where: str, distinct: str = "*") -> int:
    expression = "count(*)" if distinct == "*" else f"count(distinct {distinct})"
    return int(db.execute(f"select {expression} from public.messages where {where}").fetchone()[0])
