"""/api/conversations: create, list, get, delete, all as the caller through RLS."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from api.errors import register_api_errors
from api.requests import authenticated, conversation_id_from_path, current_caller, json_body, query
from api.schemas import ConversationIn, PageQuery
from chat.ports import CallerStore
from doors.service import chat_service

conversations_api = Blueprint("conversations_api", __name__, url_prefix="/api/conversations")
register_api_errors(conversations_api)


def callers_store() -> CallerStore:
    return chat_service().caller_store(current_caller())


@conversations_api.post("")
@authenticated
def create_conversation() -> ResponseReturnValue:
    fields = json_body(ConversationIn).model_dump(exclude_none=True)
    return jsonify(callers_store().create_conversation(fields)), 201


@conversations_api.get("")
@authenticated
def list_conversations() -> ResponseReturnValue:
    page = query(PageQuery)
    return jsonify(callers_store().list_conversations(str(page.before) if page.before else None, page.limit))


@conversations_api.get("/<conversation_id>")
@authenticated
def get_conversation(conversation_id: str) -> ResponseReturnValue:
    return jsonify(callers_store().get_conversation(conversation_id_from_path(conversation_id)))


@conversations_api.delete("/<conversation_id>")
@authenticated
def delete_conversation(conversation_id: str) -> ResponseReturnValue:
    callers_store().delete_conversation(conversation_id_from_path(conversation_id))
    return "", 204
