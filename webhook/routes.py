"""POST /webhooks/messages: verify, validate, hand off, answer fast (202) or say "not now" (503)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import structlog
from flask import Blueprint, Flask, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import ValidationError

from chat.logging import get_logger
from chat.service import Delivery
from http_common.errors import error_response
from http_common.request_body import read_body
from http_common.service import chat_service
from webhook.payload import DatabaseEvent
from webhook.signature import InvalidSignature, WebhookVerifier

webhook = Blueprint("webhook", __name__)
logger = get_logger(__name__)
RETRY_AFTER_SECONDS = "5"
_EXTENSION = "webhook_door"
NOT_NOW = {
    Delivery.SHUTTING_DOWN: ("shutting_down", "This instance is shutting down; the message will be re-driven."),
    Delivery.BUSY: ("busy", "Reply workers are full; the message will be answered by the sweep."),
}


@dataclass(frozen=True)
class WebhookDoor:
    """What the event door is built with, once, by the app factory."""

    verifier: WebhookVerifier
    max_body_bytes: int


def install_webhook_door(app: Flask, door: WebhookDoor) -> None:
    app.extensions[_EXTENSION] = door


def webhook_door() -> WebhookDoor:
    door: WebhookDoor = current_app.extensions[_EXTENSION]
    return door


@webhook.post("/webhooks/messages")
def receive_message_event() -> ResponseReturnValue:
    door = webhook_door()
    body = read_body(door.max_body_bytes)  # 413 past the limit (declared or chunked), before any parsing
    try:
        door.verifier.verify(body, {name.lower(): value for name, value in request.headers.items()})
    except InvalidSignature as error:
        logger.warning("webhook refused", reason=str(error))
        chat_service().metrics.webhook_delivery("invalid_signature")
        return error_response(401, "invalid_signature", "The webhook signature is missing, malformed, stale or wrong.")
    try:
        message = DatabaseEvent.model_validate(json.loads(body)).new_user_message()
    except (ValueError, ValidationError, RecursionError):
        chat_service().metrics.webhook_delivery("invalid_payload")
        return error_response(400, "invalid_payload", "The webhook body is not a database event for a message.")
    if message is None:
        chat_service().metrics.webhook_delivery("ignored")
        return jsonify(status="ignored"), 200
    structlog.contextvars.bind_contextvars(message_id=str(message.id), conversation_id=str(message.conversation_id))
    delivery = chat_service().accept_delivery(str(message.id))
    if delivery is Delivery.ACCEPTED:
        return jsonify(status="accepted", message_id=str(message.id)), 202
    if delivery is Delivery.BUSY:
        logger.warning("reply workers full; refusing delivery for the sweep to pick up")
    code, text = NOT_NOW[delivery]
    response = error_response(503, code, text)
    response.headers["Retry-After"] = RETRY_AFTER_SECONDS
    return response
