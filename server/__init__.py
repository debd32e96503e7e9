"""The application factory: the one place where the doors and the domain are wired together."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import structlog
from flask import Flask, Response, request
from flask_cors import CORS

from api.auth import TokenVerifier
from api.chat import chat_api
from api.conversations import conversations_api
from api.health import health
from api.openapi import openapi
from chat.logging import configure_logging
from chat.service import ChatService
from chat.settings import Settings, load_settings
from server.errors import register_error_handlers
from server.http_guards import HttpGuards
from webhook.routes import webhook


def create_app(config: Settings | Mapping[str, Any] | None = None, *, start_background: bool = True) -> Flask:
    """Build the app from `config` (a Settings, or overrides on the environment).

    `start_background` starts the re-drive sweep and the sibling listener now, for any server
    that runs this in the process that serves. Under gunicorn, server/wsgi.py passes False and
    gunicorn.conf.py's post_worker_init starts them after the fork, once per worker.
    """
    settings = config if isinstance(config, Settings) else load_settings(config)
    configure_logging(settings.effective_log_format, settings.log_level)
    app = Flask(__name__)
    app.config["SETTINGS"] = settings
    service = ChatService.from_settings(settings)
    app.extensions["chat"] = service
    app.extensions["token_verifier"] = TokenVerifier(settings)
    _bind_request_id(app)
    register_error_handlers(app)
    for blueprint in (health, webhook, chat_api, conversations_api, openapi):
        app.register_blueprint(blueprint)
    CORS(app, resources={r"/api/*": {"origins": settings.allowed_origins}},
         expose_headers=["X-Request-ID", "Retry-After"])
    app.wsgi_app = HttpGuards(app.wsgi_app, settings.request_body_timeout_seconds)  # type: ignore[method-assign]
    if start_background:
        service.start()
    return app


def _bind_request_id(app: Flask) -> None:
    @app.before_request
    def bind() -> None:
        structlog.contextvars.clear_contextvars()
        request_id = request.headers.get("X-Request-ID") or uuid.uuid4().hex
        structlog.contextvars.bind_contextvars(request_id=request_id[:64])

    @app.after_request
    def expose(response: Response) -> Response:
        if request.path.startswith("/api/"):
            response.vary.add("Origin")  # CORS headers depend on the caller's origin: keep caches apart
        request_id = structlog.contextvars.get_contextvars().get("request_id")
        if request_id:
            response.headers["X-Request-ID"] = str(request_id)
        return response
