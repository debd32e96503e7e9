"""The application factory: the one place where the doors and the domain are wired together."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import structlog
from flask import Flask, Response, request

from api.health import health
from chat.logging import configure_logging
from chat.service import ChatService
from chat.settings import Settings, load_settings
from server.errors import register_error_handlers
from webhook.routes import webhook


def create_app(config: Settings | Mapping[str, Any] | None = None, *, start_background: bool = True) -> Flask:
    """Build the app from `config` (a Settings, or overrides on the environment).

    `start_background` starts the re-drive sweep; gunicorn calls this in each worker, never in
    the master, so every worker process has its own pool and sweep.
    """
    settings = config if isinstance(config, Settings) else load_settings(config)
    configure_logging(settings.effective_log_format, settings.log_level)
    app = Flask(__name__)
    app.config["SETTINGS"] = settings
    service = ChatService.from_settings(settings)
    app.extensions["chat"] = service
    _bind_request_id(app)
    register_error_handlers(app)
    app.register_blueprint(health)
    app.register_blueprint(webhook)
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
        request_id = structlog.contextvars.get_contextvars().get("request_id")
        if request_id:
            response.headers["X-Request-ID"] = str(request_id)
        return response
