"""/api/conversations: create, list, get, delete, all as the caller through RLS."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from api.errors import register_api_errors
from api.requests import authenticated_caller, conversation_id_from_path, json_body, query, service
from api.schemas import ConversationIn, PageQuery

conversations_api = Blueprint("conversations_api", __name__, url_prefix="/api/conversations")
register_api_errors(conversations_api)


@conversations_api.post("")
def create_conversation() -> ResponseReturnValue:
    caller = authenticated_caller()
    fields = json_body(ConversationIn, service().settings).model_dump(exclude_none=True)
    return jsonify(service().callers.as_caller(caller.access_token).create_conversation(fields)), 201


@conversations_api.get("")
def list_conversations() -> ResponseReturnValue:
    caller = authenticated_caller()
    page = query(PageQuery)
    result = service().callers.as_caller(caller.access_token).list_conversations(
        str(page.before) if page.before else None, page.limit
    )
    return jsonify(result)


@conversations_api.get("/<conversation_id>")
def get_conversation(conversation_id: str) -> ResponseReturnValue:
    caller = authenticated_caller()
    conversation_id = conversation_id_from_path(conversation_id)
    return jsonify(service().callers.as_caller(caller.access_token).get_conversation(conversation_id))


@conversations_api.delete("/<conversation_id>")
def delete_conversation(conversation_id: str) -> ResponseReturnValue:
    caller = authenticated_caller()
    conversation_id = conversation_id_from_path(conversation_id)
    service().callers.as_caller(caller.access_token).delete_conversation(conversation_id)
    return "", 204
