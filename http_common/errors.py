"""One JSON shape for every error either door returns: {"error": {"code", "message"}}.

Both doors and the app factory import this; it imports nothing of theirs, so any of them loads alone."""

from __future__ import annotations

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from chat.logging import get_logger

logger = get_logger(__name__)


def error_response(status: int, code: str, message: str, **details: str) -> Response:
    """`details` add fields a caller needs to act, e.g. the message_id to fetch a reply later."""
    response = jsonify(error={"code": code, "message": message, **details})
    response.status_code = status
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        code = (error.name or "error").lower().replace(" ", "_")
        response = error_response(error.code or 500, code, error.description or error.name)
        for header in ("Allow", "Retry-After"):
            if error.get_response().headers.get(header):
                response.headers[header] = error.get_response().headers[header]
        return response

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception) -> Response:
        logger.exception("unhandled error")
        return error_response(500, "internal_error", "Something went wrong on our side; it has been logged.")
