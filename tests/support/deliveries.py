"""Building and sending webhook deliveries by hand, as the database would, for the door's tests."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import httpx
import psycopg
from standardwebhooks.webhooks import Webhook

from tests.support.database import insert_user


def message_event(message_id: str, conversation_id: str, role: str = "user", **changes: object) -> bytes:
    event = {
        "type": "INSERT",
        "table": "messages",
        "schema": "public",
        "record": {"id": message_id, "conversation_id": conversation_id, "role": role, "status": "pending"},
        "old_record": None,
        **changes,
    }
    return json.dumps(event).encode()


def signed_headers(secret: str, body: bytes, message_id: str = "msg_test", age_seconds: float = 0) -> dict[str, str]:
    sent_at = datetime.now(tz=timezone.utc) - timedelta(seconds=age_seconds)
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, sent_at, body.decode()),
    }


def deliver(service_url: str, secret: str, body: bytes, **header_changes: str) -> httpx.Response:
    headers = {**signed_headers(secret, body), **header_changes}
    return httpx.post(f"{service_url}/webhooks/messages", content=body, headers=headers, timeout=10)


def pending_message(db: psycopg.Connection, content: str = "hello", system_prompt: str | None = None) -> tuple[str, str]:
    """A user message inserted with the webhook unconfigured: nothing is delivered until a test does."""
    db.execute("delete from private.webhook_config")
    user = insert_user(db)
    conversation = db.execute(
        "insert into public.conversations (user_id, system_prompt) values (%s, %s) returning id", (user, system_prompt)
    ).fetchone()[0]
    message = db.execute(
        "insert into public.messages (conversation_id, user_id, content) values (%s, %s, %s) returning id",
        (conversation, user, content),
    ).fetchone()[0]
    return str(message), str(conversation)


def replies_to(db: psycopg.Connection, message_id: str) -> list[tuple[str, str]]:
    return db.execute(
        "select id::text, content from public.messages where reply_to = %s", (message_id,)
    ).fetchall()


def message_state(db: psycopg.Connection, message_id: str) -> tuple[str, str | None, int]:
    return db.execute(
        "select status, error, attempts from public.messages where id = %s", (message_id,)
    ).fetchone()
