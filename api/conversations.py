"""/api/conversations: create, list, get, delete, all as the caller through RLS."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from api.errors import register_api_errors
from api.requests import authenticated, conversation_id_from_path, current_caller, json_body, query
from api.schemas import ConversationIn, PageQuery
from http_common.service import chat_service

conversations_api = Blueprint("conversations_api", __name__, url_prefix="/api/conversations")
register_api_errors(conversations_api)


@conversations_api.post("")
@authenticated
def create_conversation() -> ResponseReturnValue:
    fields = json_body(ConversationIn).model_dump(exclude_none=True)
    return jsonify(chat_service().create_conversation(current_caller(), fields)), 201


@conversations_api.get("")
@authenticated
def list_conversations() -> ResponseReturnValue:
    page = query(PageQuery)
    before = str(page.before) if page.before else None
    return jsonify(chat_service().list_conversations(current_caller(), before, page.limit))


@conversations_api.get("/<conversation_id>")
@authenticated
def get_conversation(conversation_id: str) -> ResponseReturnValue:
    return jsonify(chat_service().get_conversation(current_caller(), conversation_id_from_path(conversation_id)))


@conversations_api.delete("/<conversation_id>")
@authenticated
def delete_conversation(conversation_id: str) -> ResponseReturnValue:
    chat_service().delete_conversation(current_caller(), conversation_id_from_path(conversation_id))
    return "", 204
