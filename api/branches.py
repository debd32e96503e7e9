"""Asking again: regenerate a reply, or edit a message into a new branch. Each writes a new user
message as the caller (the database places it in the conversation's tree), then waits for its
reply exactly as POST /api/chat/<conversation_id> waits: the same JSON answer and statuses, or
the same events with `Accept: text/event-stream`."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from api.errors import register_api_errors
from api.event_stream import event_stream_response, wants_event_stream
from api.requests import authenticated, conversation_id_from_path, current_caller, json_body, message_id_from_path
from api.schemas import EditMessageIn
from http_common.service import chat_service

branches_api = Blueprint("branches_api", __name__, url_prefix="/api/chat")
register_api_errors(branches_api)


@branches_api.post("/<conversation_id>/messages/<message_id>/regenerate")
@authenticated
def regenerate(conversation_id: str, message_id: str) -> ResponseReturnValue:
    """A new reply to the message (or to the message a reply's id answers); the old reply is kept
    as a version. Counted as a message by the usage limits."""
    conversation_id = conversation_id_from_path(conversation_id)
    message_id = message_id_from_path(message_id)
    written = chat_service().regenerate_message(current_caller(), conversation_id, message_id)
    return _reply(conversation_id, written)


@branches_api.post("/<conversation_id>/messages/<message_id>/edit")
@authenticated
def edit(conversation_id: str, message_id: str) -> ResponseReturnValue:
    """The message with new text, on a new branch from the same place, and its reply; the old
    branch stays readable (history with its leaf)."""
    conversation_id = conversation_id_from_path(conversation_id)
    message_id = message_id_from_path(message_id)
    body = json_body(EditMessageIn)
    written = chat_service().edit_message(current_caller(), conversation_id, message_id, body.message)
    return _reply(conversation_id, written)


def _reply(conversation_id: str, message_id: str) -> ResponseReturnValue:
    if wants_event_stream():
        return event_stream_response(chat_service().stream_reply(current_caller(), conversation_id, message_id))
    return jsonify(chat_service().await_reply(current_caller(), message_id).as_json())
