"""POST /api/chat/<conversation_id> and its history: the synchronous door for callers without
Realtime. Authenticate, validate, hand to the domain, shape the answer."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import Forbidden

from api.errors import register_api_errors
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
    reply = chat_service().send_message(
        current_caller(),
        conversation_id,
        body.message,
        str(body.client_message_id) if body.client_message_id else None,
    )
    return jsonify(
        response=reply.response,
        conversation_id=reply.conversation_id,
        message_id=reply.message_id,
        reply_id=reply.reply_id,
    )


@chat_api.get("/chat/<conversation_id>/history")
@authenticated
def history(conversation_id: str) -> ResponseReturnValue:
    conversation_id = conversation_id_from_path(conversation_id)
    page = query(PageQuery)
    result = chat_service().caller_store(current_caller()).conversation_history(
        conversation_id, str(page.before) if page.before else None, page.limit
    )
    return jsonify(conversation_id=conversation_id, **result)
