"""POST /webhooks/messages: verify, validate, hand off, answer fast (202) or say "not now" (503)."""

from __future__ import annotations

import json

import structlog
from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import ValidationError

from chat.logging import get_logger
from chat.service import ChatService
from server.errors import error_response
from server.request_body import read_body
from webhook.payload import DatabaseEvent
from webhook.signature import InvalidSignature, verify_signature

webhook = Blueprint("webhook", __name__)
logger = get_logger(__name__)
RETRY_AFTER_SECONDS = "5"


@webhook.post("/webhooks/messages")
def receive_message_event() -> ResponseReturnValue:
    service: ChatService = current_app.extensions["chat"]
    settings = service.settings
    body = read_body(settings.webhook_max_body_bytes)  # 413 past the limit, before any parsing
    try:
        verify_signature(
            settings.webhook_secret.get_secret_value(),
            body,
            {name.lower(): value for name, value in request.headers.items()},
            settings.webhook_tolerance_seconds,
        )
    except InvalidSignature as error:
        logger.warning("webhook refused", reason=str(error))
        return error_response(401, "invalid_signature", "The webhook signature is missing, malformed, stale or wrong.")
    try:
        message = DatabaseEvent.model_validate(json.loads(body)).new_user_message()
    except (ValueError, ValidationError, RecursionError):
        return error_response(400, "invalid_payload", "The webhook body is not a database event for a message.")
    if message is None:
        return jsonify(status="ignored"), 200
    structlog.contextvars.bind_contextvars(message_id=str(message.id), conversation_id=str(message.conversation_id))
    if not service.workers.accepting:
        response = error_response(503, "shutting_down", "This instance is shutting down; the message will be re-driven.")
        response.headers["Retry-After"] = RETRY_AFTER_SECONDS
        return response
    if not service.workers.submit(str(message.id)):
        logger.warning("reply workers full; refusing delivery for the sweep to pick up")
        response = error_response(503, "busy", "Reply workers are full; the message will be answered by the sweep.")
        response.headers["Retry-After"] = RETRY_AFTER_SECONDS
        return response
    return jsonify(status="accepted", message_id=str(message.id)), 202
