"""GET /metrics: the Prometheus text exposition, for the platform's scraper.

Served when METRICS_TOKEN is set, to a request that presents it as a bearer token (Render, or
any Prometheus with `authorization: {credentials: ...}`), and when METRICS_PORT is set, without a
token to requests that arrived on that port: a listener of its own (gunicorn.conf.py) that only
the platform's private network reaches, for Fly.io's scraper, which sends no credentials. With
neither set the route does not exist (404)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from flask import Blueprint, Flask, Response, current_app, request
from flask.typing import ResponseReturnValue

from http_common.errors import error_response
from http_common.service import chat_service

metrics_api = Blueprint("metrics", __name__)
_EXTENSION = "metrics_door"


@dataclass(frozen=True)
class MetricsDoor:
    token: str | None
    private_port: int | None = None

    def admits(self, authorization: str, local_port: int | None) -> bool:
        if self.private_port is not None and local_port == self.private_port:
            return True
        scheme, _, token = authorization.partition(" ")
        return (
            self.token is not None
            and scheme.lower() == "bearer"
            and hmac.compare_digest(token.strip().encode(), self.token.encode())
        )


def install_metrics_door(app: Flask, door: MetricsDoor) -> None:
    app.extensions[_EXTENSION] = door
    app.register_blueprint(metrics_api)


@metrics_api.get("/metrics")
def metrics() -> ResponseReturnValue:
    door: MetricsDoor = current_app.extensions[_EXTENSION]
    if not door.admits(request.headers.get("Authorization", ""), _local_port()):
        response = error_response(401, "invalid_token", "/metrics needs the METRICS_TOKEN as a bearer token.")
        response.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    body, content_type = chat_service().metrics.render()
    return Response(body, content_type=content_type, headers={"Cache-Control": "no-store"})


def _local_port() -> int | None:
    """The port this request's connection arrived on (gunicorn's socket; never a header)."""
    connection = request.environ.get("gunicorn.socket")
    try:
        return int(connection.getsockname()[1]) if connection is not None else None
    except (OSError, IndexError, TypeError, ValueError):
        return None
