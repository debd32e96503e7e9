"""POST /api/chat/<conversation_id> and its history: the synchronous door for callers without
Realtime. Authenticate, validate, hand to the domain, shape the answer."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import Forbidden

from api.ai_sdk import chat_id, chat_request, message_to_send, refused, speaks_ai_sdk
from api.errors import register_api_errors
from api.event_stream import event_stream_response, wants_event_stream
from api.requests import (
    authenticated,
    conversation_id_from_path,
    current_caller,
    json_object,
    message_id_from_path,
    query,
    validated,
)
from api.schemas import ChatMessageIn, HistoryQuery
from api.ui_message_stream import ui_message_parts, ui_message_stream_response
from chat.caller import Caller
from chat.errors import StoreUnavailable
from http_common.service import chat_service

chat_api = Blueprint("chat_api", __name__, url_prefix="/api")
register_api_errors(chat_api)


@chat_api.post("/chat/<conversation_id>")
@authenticated
def send_message(conversation_id: str) -> ResponseReturnValue:
    fields = json_object()
    if speaks_ai_sdk(fields):
        return ai_sdk_reply(fields, conversation_id)
    conversation_id = conversation_id_from_path(conversation_id)
    body = validated(ChatMessageIn, fields)
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


@chat_api.post("/chat")
@authenticated
def send_ai_sdk_message() -> ResponseReturnValue:
    """The AI SDK's DefaultChatTransport with `api` at /api/chat: its chat id is the conversation."""
    return ai_sdk_reply(json_object(), None)


def ai_sdk_reply(fields: dict[str, Any], path_conversation_id: str | None) -> Response:
    """The reply as the AI SDK's UI message stream; a refusal as plain text with its status (see api/ai_sdk.py)."""
    caller = current_caller()
    try:
        sdk_request = chat_request(fields)
        conversation_id = conversation_id_from_path(path_conversation_id or chat_id(sdk_request))
        message = message_to_send(sdk_request, conversation_id)
        events = chat_service().stream_message(caller, conversation_id, message.content, message.client_message_id)
    except Exception as error:
        return refused(error)
    sent = {"conversation_id": conversation_id, "message_id": _sent_message_id(caller, message.client_message_id)}
    return ui_message_stream_response(ui_message_parts(events, sent), events)


def _sent_message_id(caller: Caller, client_message_id: str) -> str | None:
    """The id of the message just inserted (or found, for a request sent twice), which the stop
    route takes. The reply is under way already: without it the stream goes on, unnamed."""
    try:
        return chat_service().sent_message_id(caller, client_message_id)
    except StoreUnavailable:
        return None


@chat_api.get("/chat/<conversation_id>/stream")
@authenticated
def resume_stream(conversation_id: str) -> ResponseReturnValue:
    """The AI SDK's resumeStream: the reply to the caller's latest message of the conversation,
    replayed from its start, while it is being written; 204 when nothing is under way."""
    try:
        conversation_id = conversation_id_from_path(conversation_id)
        followed = chat_service().follow_reply(current_caller(), conversation_id)
    except Exception as error:
        return refused(error)
    if followed is None:
        return Response(status=204)
    message_id, events = followed
    sent = {"conversation_id": conversation_id, "message_id": message_id}
    return ui_message_stream_response(ui_message_parts(events, sent), events)


@chat_api.post("/chat/<conversation_id>/messages/<message_id>/stop")
@authenticated
def stop_reply(conversation_id: str, message_id: str) -> ResponseReturnValue:
    """Stop the caller's reply wherever it is generated; the partial reply is kept (status
    stopped). A settled message is left as it is and its status returned."""
    conversation_id = conversation_id_from_path(conversation_id)
    message_id = message_id_from_path(message_id)
    status = chat_service().stop_reply(current_caller(), message_id)
    return jsonify(message_id=message_id, conversation_id=conversation_id, status=status)


@chat_api.get("/chat/<conversation_id>/history")
@authenticated
def history(conversation_id: str) -> ResponseReturnValue:
    """Without `leaf`, the whole conversation in order; with one, the branch through it (see HistoryQuery)."""
    conversation_id = conversation_id_from_path(conversation_id)
    page = query(HistoryQuery)
    before = str(page.before) if page.before else None
    if page.leaf is None:
        result = chat_service().conversation_history(current_caller(), conversation_id, before, page.limit)
    else:
        leaf = None if page.leaf == "newest" else str(page.leaf)
        result = chat_service().conversation_branch(current_caller(), conversation_id, leaf, before, page.limit)
    return jsonify(conversation_id=conversation_id, **result)
