"""POST /webhooks/messages refuses anything not signed by our database with 401 (never 500),
oversize bodies with 413 and malformed events with 400, and changes nothing when it refuses."""

from __future__ import annotations

import base64

import httpx
import psycopg
import pytest

from devstack.service_process import ServiceProcess
from devstack.stack import LocalStack
from tests.support.deliveries import deliver, message_event, message_state, pending_message, replies_to, signed_headers
from tests.support.polling import wait_until
from tests.support.stack import FakeModelControl

OTHER_SECRET = "whsec_" + base64.b64encode(b"x" * 32).decode()


def assert_untouched(db: psycopg.Connection, fake_model: FakeModelControl, message_id: str) -> None:
    assert message_state(db, message_id) == ("pending", None, 0)
    assert replies_to(db, message_id) == []
    assert fake_model.requests() == []


@pytest.mark.parametrize(
    "tamper",
    [
        "wrong_secret", "stale", "future", "no_headers", "no_signature", "garbage_signature", "bad_base64",
        "no_comma", "unknown_version", "non_numeric_timestamp", "nan_timestamp", "body_changed",
    ],
)
def test_forged_replayed_and_malformed_deliveries_are_401(
    service: ServiceProcess, stack: LocalStack, db: psycopg.Connection, fake_model: FakeModelControl, tamper: str
) -> None:
    message_id, conversation_id = pending_message(db)
    body = message_event(message_id, conversation_id)
    secret = stack.webhook_secret
    headers = signed_headers(secret, body)
    changes: dict[str, dict[str, str]] = {
        "wrong_secret": signed_headers(OTHER_SECRET, body),
        "stale": signed_headers(secret, body, age_seconds=600),
        "future": signed_headers(secret, body, age_seconds=-600),
        "no_headers": {"webhook-id": "", "webhook-timestamp": "", "webhook-signature": ""},
        "no_signature": {"webhook-signature": ""},
        "garbage_signature": {"webhook-signature": "v1,AAAA"},
        "bad_base64": {"webhook-signature": "v1,!!!not-base64!!!"},
        "no_comma": {"webhook-signature": "v1AAAA"},
        "unknown_version": {"webhook-signature": headers["webhook-signature"].replace("v1,", "v9,")},
        "non_numeric_timestamp": {"webhook-timestamp": "yesterday"},
        "nan_timestamp": {"webhook-timestamp": "nan"},
        "body_changed": {},
    }
    sent_body = body.replace(b'"pending"', b'"done"   ') if tamper == "body_changed" else body
    response = httpx.post(
        f"{service.url}/webhooks/messages", content=sent_body, headers={**headers, **changes[tamper]}
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_signature"
    assert_untouched(db, fake_model, message_id)


def test_non_utf8_body_is_401(service: ServiceProcess, stack: LocalStack) -> None:
    body = b"\xff\xfe not utf-8"
    headers = signed_headers(stack.webhook_secret, b"placeholder")
    response = httpx.post(f"{service.url}/webhooks/messages", content=body, headers=headers)
    assert response.status_code == 401


def test_oversize_body_is_413(service: ServiceProcess, stack: LocalStack) -> None:
    body = b'{"pad": "' + b"x" * (300 * 1024) + b'"}'
    response = deliver(service.url, stack.webhook_secret, body)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_entity_too_large"


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b'{"type": "INSERT"}', message_event("not-a-uuid", "also-not")],
)
def test_signed_but_invalid_payload_is_400(service: ServiceProcess, stack: LocalStack, body: bytes) -> None:
    response = deliver(service.url, stack.webhook_secret, body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_payload"


@pytest.mark.parametrize(
    ("role", "changes"), [("assistant", {}), ("user", {"type": "UPDATE"}), ("user", {"table": "conversations"})]
)
def test_events_other_than_new_user_messages_are_ignored(
    service: ServiceProcess, stack: LocalStack, db: psycopg.Connection, fake_model: FakeModelControl,
    role: str, changes: dict[str, str],
) -> None:
    message_id, conversation_id = pending_message(db)
    response = deliver(service.url, stack.webhook_secret, message_event(message_id, conversation_id, role, **changes))
    assert response.status_code == 200
    assert response.json() == {"status": "ignored"}
    assert_untouched(db, fake_model, message_id)


def test_unknown_message_is_accepted_and_nothing_happens(
    service: ServiceProcess, stack: LocalStack, db: psycopg.Connection, fake_model: FakeModelControl
) -> None:
    ghost = "00000000-0000-4000-8000-000000000000"
    response = deliver(service.url, stack.webhook_secret, message_event(ghost, ghost))
    assert response.status_code == 202
    assert fake_model.requests() == []


def test_valid_delivery_is_accepted_and_answered(
    service: ServiceProcess, stack: LocalStack, db: psycopg.Connection, fake_model: FakeModelControl
) -> None:
    message_id, conversation_id = pending_message(db, "are you there?")
    response = deliver(service.url, stack.webhook_secret, message_event(message_id, conversation_id))
    assert response.status_code == 202
    assert response.json() == {"status": "accepted", "message_id": message_id}
    reply = wait_until(lambda: replies_to(db, message_id))
    assert reply[0][1] == "Echo: are you there?"
