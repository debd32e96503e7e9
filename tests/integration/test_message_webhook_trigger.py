"""The database webhook: a user message queues one Standard-Webhooks-signed POST through
net.http_post; an assistant row queues nothing; the pg_net stand-in delivers it after commit."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

import psycopg
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

if TYPE_CHECKING:
    from devstack.stack import LocalStack
from tests.support.database import insert_user


def queued_requests(db: psycopg.Connection) -> list[dict]:
    rows = db.execute("select url, headers, convert_from(body, 'UTF8') from net.http_request_queue").fetchall()
    return [{"url": url, "headers": headers, "body": body} for url, headers, body in rows]


@pytest.fixture
def conversation(db: psycopg.Connection) -> tuple[str, str]:
    user = insert_user(db)
    conversation_id = db.execute(
        "insert into public.conversations (user_id) values (%s) returning id", (user,)
    ).fetchone()[0]
    return user, str(conversation_id)


@pytest.fixture
def configured(db: psycopg.Connection, stack: LocalStack) -> Iterator[str]:
    """Webhook configured to a closed port, with delivery paused so the queue can be read."""
    assert stack.pgnet is not None
    stack.pgnet.faults.paused = True
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    db.execute("select private.configure_message_webhook('http://127.0.0.1:9/hook', %s)", (secret,))
    yield secret
    db.execute("delete from private.webhook_config")
    stack.pgnet.faults.paused = False


def insert_user_message(db: psycopg.Connection, user: str, conversation_id: str, content: str = "hi") -> str:
    return str(db.execute(
        "insert into public.messages (conversation_id, user_id, content) values (%s, %s, %s) returning id",
        (conversation_id, user, content),
    ).fetchone()[0])


def test_user_message_queues_one_signed_post(db: psycopg.Connection, conversation: tuple[str, str], configured: str) -> None:
    user, conversation_id = conversation
    message_id = insert_user_message(db, user, conversation_id, "héllo ✓")
    [request] = queued_requests(db)
    assert request["url"] == "http://127.0.0.1:9/hook"
    headers = request["headers"]
    assert headers["webhook-id"] == f"msg_{message_id}"
    payload = Webhook(configured).verify(request["body"], headers)
    assert payload["type"] == "INSERT" and payload["table"] == "messages"
    assert payload["record"] == {"id": message_id, "conversation_id": conversation_id, "role": "user"}
    assert "héllo" not in request["body"]  # ids only: any signed-in user can read pg_net's queue


def test_signature_does_not_verify_under_another_secret(
    db: psycopg.Connection, conversation: tuple[str, str], configured: str
) -> None:
    insert_user_message(db, *conversation)
    [request] = queued_requests(db)
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=").verify(request["body"], request["headers"])


def test_assistant_row_queues_nothing(db: psycopg.Connection, conversation: tuple[str, str], configured: str) -> None:
    user, conversation_id = conversation
    message_id = insert_user_message(db, user, conversation_id)
    db.execute("delete from net.http_request_queue")
    db.execute(
        "insert into public.messages (conversation_id, user_id, role, content, status, reply_to)"
        " values (%s, %s, 'assistant', 'reply', 'done', %s)",
        (conversation_id, user, message_id),
    )
    assert queued_requests(db) == []


def test_unconfigured_webhook_keeps_the_message_pending(db: psycopg.Connection, conversation: tuple[str, str]) -> None:
    message_id = insert_user_message(db, *conversation)
    assert queued_requests(db) == []
    assert db.execute("select status from public.messages where id = %s", (message_id,)).fetchone() == ("pending",)


def test_rolled_back_insert_queues_nothing(db: psycopg.Connection, conversation: tuple[str, str], configured: str) -> None:
    user, conversation_id = conversation
    with db.transaction(force_rollback=True):
        insert_user_message(db, user, conversation_id)
    assert queued_requests(db) == []


class RecordingReceiver:
    """A plain HTTP endpoint standing in for the service, recording what arrives."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(202)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks/messages"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, deadline_seconds: float = 5.0) -> None:
        deadline = time.monotonic() + deadline_seconds
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(self.received) >= count, f"received {len(self.received)} of {count} deliveries"


@pytest.fixture
def receiver(stack: LocalStack) -> Iterator[RecordingReceiver]:
    receiver = RecordingReceiver()
    stack.configure_webhook(receiver.url)
    yield receiver
    receiver.server.shutdown()
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        conn.execute("delete from private.webhook_config")


def test_stand_in_pg_net_delivers_signed_request_after_commit(
    stack: LocalStack, db: psycopg.Connection, conversation: tuple[str, str], receiver: RecordingReceiver
) -> None:
    message_id = insert_user_message(db, *conversation)
    receiver.wait_for(1)
    headers, body = receiver.received[0]
    payload = Webhook(stack.webhook_secret).verify(body, headers)
    assert payload["record"]["id"] == message_id
    assert headers["content-type"] == "application/json"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        response = db.execute("select status_code from net._http_response").fetchall()
        if response:
            break
        time.sleep(0.01)
    assert response == [(202,)]
    assert json.loads(body)["record"]["role"] == "user"
