"""The REST door's one mapping from named failures to HTTP, in the shared error shape."""

from __future__ import annotations

from flask import Blueprint, Response

from api.auth import InvalidToken
from chat.errors import (
    ClientMessageConflict,
    ConversationLimitReached,
    ConversationNotFound,
    CursorNotFound,
    InvalidCredentials,
    InvalidRequest,
    LeafNotFound,
    MessageNotFound,
    RateLimited,
    ReplyFailed,
    ReplyTimeout,
    StoreRejected,
    StoreUnavailable,
)
from chat.logging import get_logger
from chat.metrics import quota_limit_label
from http_common.errors import error_response
from http_common.service import chat_service

logger = get_logger(__name__)


def register_api_errors(blueprint: Blueprint) -> None:
    @blueprint.errorhandler(InvalidToken)
    def invalid_token(error: InvalidToken) -> Response:
        response = error_response(401, "invalid_token", str(error))
        response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
        return response

    @blueprint.errorhandler(InvalidCredentials)
    def refused_credentials(error: InvalidCredentials) -> Response:
        return error_response(401, "invalid_token", "Supabase refused the access token; sign in again.")

    @blueprint.errorhandler(ConversationNotFound)
    def not_found(error: ConversationNotFound) -> Response:
        return error_response(404, "not_found", "No such conversation.")

    @blueprint.errorhandler(MessageNotFound)
    def message_not_found(error: MessageNotFound) -> Response:
        return error_response(404, "not_found", "No such message.")

    @blueprint.errorhandler(CursorNotFound)
    def cursor_not_found(error: CursorNotFound) -> Response:
        return error_response(404, "cursor_not_found", "The 'before' cursor names nothing in this list; start again without it.")

    @blueprint.errorhandler(LeafNotFound)
    def leaf_not_found(error: LeafNotFound) -> Response:
        return error_response(
            404, "leaf_not_found",
            "The leaf names no message of this conversation; pass one of its message ids, or leaf=newest.",
        )

    @blueprint.errorhandler(InvalidRequest)
    def invalid_request(error: InvalidRequest) -> Response:
        return error_response(400, "bad_request", f"Invalid request: {error}")

    @blueprint.errorhandler(ClientMessageConflict)
    def client_message_conflict(error: ClientMessageConflict) -> Response:
        return error_response(
            409, "client_message_id_conflict", "This client_message_id was already used in another conversation."
        )

    @blueprint.errorhandler(RateLimited)
    def rate_limited(error: RateLimited) -> Response:
        chat_service().metrics.quota_refused(quota_limit_label(error.limit))
        details = {"limit": error.limit} if error.limit else {}
        response = error_response(429, "rate_limited", error.message, **details)
        response.headers["Retry-After"] = str(error.retry_after_seconds)
        return response

    @blueprint.errorhandler(ConversationLimitReached)
    def conversation_limit(error: ConversationLimitReached) -> Response:
        chat_service().metrics.quota_refused("conversations")
        return error_response(403, "conversation_limit", str(error))

    @blueprint.errorhandler(ReplyFailed)
    def reply_failed(error: ReplyFailed) -> Response:
        return error_response(502, "reply_failed", error.error, message_id=error.message_id)

    @blueprint.errorhandler(ReplyTimeout)
    def reply_timeout(error: ReplyTimeout) -> Response:
        return error_response(
            504,
            "reply_timeout",
            "No reply yet. The message is kept and will be answered: fetch it later from the history.",
            message_id=error.message_id,
        )

    @blueprint.errorhandler(StoreUnavailable)
    def store_unavailable(error: StoreUnavailable) -> Response:
        logger.warning("supabase unavailable", reason=str(error))
        response = error_response(503, "supabase_unavailable", "Supabase is unreachable right now; try again shortly.")
        response.headers["Retry-After"] = "5"
        return response

    @blueprint.errorhandler(StoreRejected)
    def store_rejected(error: StoreRejected) -> Response:
        # Our fault (code and schema disagree), not Supabase's: no Retry-After, and logged for us.
        logger.error("supabase refused a request", reason=str(error))
        return error_response(500, "internal_error", "Something went wrong on our side; it has been logged.")
