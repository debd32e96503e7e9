"""POST /api/chat/<conversation_id> and its history: the synchronous door for callers without
Realtime. Authenticate, validate, hand to the domain, shape the answer."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import Forbidden

from api.errors import register_api_errors
from api.event_stream import event_stream_response, wants_event_stream
from api.requests import authenticated, conversation_id_from_path, current_caller, json_body, query
from api.schemas import ChatMessageIn, PageQuery
from doors.service import chat_service

chat_api = Blueprint("chat_api", __name__, url_prefix="/api")
register_api_errors(chat_api)


@chat_api.post("/chat/<conversation_id>")
@authenticated
def send_message(conversation_id: str) -> ResponseReturnValue:
    conversation_id = conversation_id_from_path(conversation_id)
    body = json_body(ChatMessageIn)
    if body.user_id is not None and body.user_id != current_caller().user_id:
        raise Forbidden("user_id must be your own; it is taken from your access token.")
    if wants_event_stream():
        events = chat_service().stream_message(
            current_caller(),
            conversation_id,
            body.message,
            str(body.client_message_id) if body.client_message_id else None,
        )
        return event_stream_response(events)
    reply = chat_service().send_message(
        current_caller(),
        conversation_id,
        body.message,
        str(body.client_message_id) if body.client_message_id else None,
    )
    return jsonify(reply.as_json())


@chat_api.post("/chat/<conversation_id>/messages/<message_id>/stop")
@authenticated
def stop_reply(conversation_id: str, message_id: str) -> ResponseReturnValue:
    """Stop the caller's reply wherever it is generated; the partial reply is kept (status
    stopped). A settled message is left as it is and its status returned."""
    conversation_id = conversation_id_from_path(conversation_id)
    message_id = conversation_id_from_path(message_id)
    status = chat_service().stop_reply(current_caller(), message_id)
    return jsonify(message_id=message_id, conversation_id=conversation_id, status=status)


@chat_api.get("/chat/<conversation_id>/history")
@authenticated
def history(conversation_id: str) -> ResponseReturnValue:
    conversation_id = conversation_id_from_path(conversation_id)
    page = query(PageQuery)
    result = chat_service().caller_store(current_caller()).conversation_history(
        conversation_id, str(page.before) if page.before else None, page.limit
    )
    return jsonify(conversation_id=conversation_id, **result)
