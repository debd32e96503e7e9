"""GET /api/search and GET /api/usage: the caller's own messages across conversations, and what
the caller has used of today's limits. Both as the caller, under row-level security."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from api.errors import register_api_errors
from api.requests import authenticated, current_caller, query
from api.schemas import SearchQuery
from http_common.service import chat_service

search_api = Blueprint("search_api", __name__, url_prefix="/api")
register_api_errors(search_api)


@search_api.get("/search")
@authenticated
def search() -> ResponseReturnValue:
    """Best match first; each snippet is plain text with the matched words between « and »."""
    asked = query(SearchQuery)
    return jsonify(query=asked.q, results=chat_service().search_messages(current_caller(), asked.q, asked.limit))


@search_api.get("/usage")
@authenticated
def usage() -> ResponseReturnValue:
    return jsonify(chat_service().usage(current_caller()))
