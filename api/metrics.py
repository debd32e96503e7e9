"""GET /metrics: the Prometheus text exposition, for the platform's scraper (Fly.io's [metrics],
Render's or any Prometheus). Served only when METRICS_TOKEN is set, and only to a request that
presents it as a bearer token; unset, the route does not exist (404)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from flask import Blueprint, Flask, Response, current_app, request
from flask.typing import ResponseReturnValue

from doors.errors import error_response
from doors.service import chat_service

metrics_api = Blueprint("metrics", __name__)
_EXTENSION = "metrics_door"


@dataclass(frozen=True)
class MetricsDoor:
    token: str


def install_metrics_door(app: Flask, door: MetricsDoor) -> None:
    app.extensions[_EXTENSION] = door
    app.register_blueprint(metrics_api)


@metrics_api.get("/metrics")
def metrics() -> ResponseReturnValue:
    door: MetricsDoor = current_app.extensions[_EXTENSION]
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), door.token.encode()):
        response = error_response(401, "invalid_token", "/metrics needs the METRICS_TOKEN as a bearer token.")
        response.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    body, content_type = chat_service().metrics.render()
    return Response(body, content_type=content_type, headers={"Cache-Control": "no-store"})
