"""POST /webhooks/messages through the running service: a delivery not signed by our database is
401 (never 500), an oversize body 413 and a malformed event 400, and nothing changes when it
refuses; one row each here, every other defect a row of unit/test_signature.py and
unit/test_doors.py."""

from __future__ import annotations

import base64

import httpx
import psycopg

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


def test_a_delivery_signed_with_another_secret_is_401(
    service: ServiceProcess, db: psycopg.Connection, fake_model: FakeModelControl
) -> None:
    """One forgery through the running service; every other defect (replayed, from the future,
    missing or empty headers, garbage, bad base64, no comma, unknown version, timestamps not a
    number or NaN, a changed body, a body not UTF-8) is a row of unit/test_signature.py
    (test_each_defect_is_refused_with_its_reason), their 401 at the door unit/test_doors.py's
    (test_the_event_door_refuses_bad_deliveries, test_a_body_that_is_not_utf8_is_401)."""
    message_id, conversation_id = pending_message(db)
    body = message_event(message_id, conversation_id)
    response = httpx.post(f"{service.url}/webhooks/messages", content=body, headers=signed_headers(OTHER_SECRET, body))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_signature"
    assert_untouched(db, fake_model, message_id)


def test_oversize_body_is_413(service: ServiceProcess, stack: LocalStack) -> None:
    body = b'{"pad": "' + b"x" * (300 * 1024) + b'"}'
    response = deliver(service.url, stack.webhook_secret, body)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_entity_too_large"


def test_signed_but_invalid_payload_is_400(service: ServiceProcess, stack: LocalStack) -> None:
    """Not JSON; an array, an object that is no event and ids not UUIDs are rows of
    unit/test_doors.py (test_the_event_door_refuses_bad_deliveries)."""
    response = deliver(service.url, stack.webhook_secret, b"not json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_payload"


def test_events_other_than_new_user_messages_are_ignored(
    service: ServiceProcess, stack: LocalStack, db: psycopg.Connection, fake_model: FakeModelControl
) -> None:
    """An update; the assistant's message and another table are rows of unit/test_doors.py
    (test_an_event_that_is_not_a_new_user_message_is_ignored)."""
    message_id, conversation_id = pending_message(db)
    response = deliver(service.url, stack.webhook_secret, message_event(message_id, conversation_id, type="UPDATE"))
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
