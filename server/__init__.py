"""The application factory: the one place where the doors, the domain and the adapters are wired."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any

import structlog
from flask import Flask, Response, request
from flask_cors import CORS

from api.auth import TokenVerifier, auth_issuer, project_signing_keys
from api.branches import branches_api
from api.chat import chat_api
from api.conversations import conversations_api
from api.health import health
from api.metrics import MetricsDoor, install_metrics_door
from api.openapi import openapi
from api.requests import RestDoor, install_rest_door
from api.search import search_api
from chat.logging import configure_logging
from chat.metrics import ServiceMetrics
from chat.service import ChatService
from http_common.errors import register_error_handlers
from http_common.service import install_chat_service
from server.http_guards import HttpGuards
from server.settings import Settings, load_settings
from server.wiring import build_chat_service
from webhook.routes import WebhookDoor, install_webhook_door, webhook
from webhook.signature import WebhookVerifier


def create_app(
    config: Settings | Mapping[str, Any] | None = None,
    *,
    start_background: bool = True,
    service: ChatService | None = None,
) -> Flask:
    """Build the app from `config` (a Settings, or overrides on the environment).

    `service` replaces the one built from settings (tests pass one on in-memory fakes).
    `start_background` starts the re-drive sweep and the sibling listener now, for any server
    that runs this in the process that serves. Under gunicorn, server/wsgi.py passes False and
    gunicorn.conf.py's post_worker_init starts them after the fork, once per worker.
    """
    settings = config if isinstance(config, Settings) else load_settings(config)
    configure_logging(settings.effective_log_format, settings.log_level, cache_loggers=settings.app_env != "test")
    app = Flask(__name__)
    service = service or build_chat_service(settings)
    install_chat_service(app, service)
    install_rest_door(
        app, RestDoor(token_verifier(settings), settings.api_max_body_bytes, tuple(settings.offered_models))
    )
    install_webhook_door(
        app,
        WebhookDoor(
            WebhookVerifier(settings.webhook_secret.get_secret_value(), settings.webhook_tolerance_seconds),
            settings.webhook_max_body_bytes,
        ),
    )
    _bind_request_id(app)
    _count_requests(app, service.metrics)
    register_error_handlers(app)
    for blueprint in (health, webhook, chat_api, branches_api, conversations_api, search_api, openapi):
        app.register_blueprint(blueprint)
    if settings.metrics_token is not None or settings.metrics_port is not None:
        token = settings.metrics_token.get_secret_value() if settings.metrics_token is not None else None
        install_metrics_door(app, MetricsDoor(token, settings.metrics_port))
    CORS(app, resources={r"/api/*": {"origins": settings.allowed_origins}},
         expose_headers=["X-Request-ID", "Retry-After"])
    app.wsgi_app = HttpGuards(app.wsgi_app, settings.request_body_timeout_seconds)  # type: ignore[method-assign]
    if start_background:
        service.start()
    return app


def token_verifier(settings: Settings) -> TokenVerifier:
    legacy = settings.supabase_jwt_secret.get_secret_value() if settings.supabase_jwt_secret else None
    return TokenVerifier(
        auth_issuer(settings.supabase_url), project_signing_keys(settings.supabase_url, settings.jwks_cache_seconds), legacy
    )


_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def request_id_of(given: str | None) -> str:
    """The id on every log line of a request and of the reply it hands on: the one the request
    brought if it is a plain token of at most 64 characters, else a new one."""
    if given and _REQUEST_ID.fullmatch(given):
        return given
    return uuid.uuid4().hex


def _count_requests(app: Flask, metrics: ServiceMetrics) -> None:
    @app.after_request
    def count(response: Response) -> Response:
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        method = request.method if request.method in _METHODS else "other"
        metrics.http_request(route, method, response.status_code)
        return response


def _bind_request_id(app: Flask) -> None:
    @app.before_request
    def bind() -> None:
        structlog.contextvars.clear_contextvars()
        # A webhook delivery is known by its own id (Standard Webhooks' `webhook-id`, the same on
        # every retry of one delivery); any other request by the caller's X-Request-ID.
        header = "webhook-id" if request.path.startswith("/webhooks/") else "X-Request-ID"
        given = request.headers.get(header)
        structlog.contextvars.bind_contextvars(request_id=request_id_of(given))

    @app.after_request
    def expose(response: Response) -> Response:
        if request.path.startswith("/api/"):
            response.vary.add("Origin")  # CORS headers depend on the caller's origin: keep caches apart
        request_id = structlog.contextvars.get_contextvars().get("request_id")
        if request_id:
            response.headers["X-Request-ID"] = str(request_id)
        return response
