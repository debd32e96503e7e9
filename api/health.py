"""Liveness and readiness for the platform's health checks, unauthenticated.

/healthz answers while the process can serve a request; /readyz also proves Supabase answers
(configuration was validated at start-up, so a running process has a complete one)."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue

from chat.errors import StoreUnavailable
from doors.errors import error_response

health = Blueprint("health", __name__)


@health.get("/healthz")
def healthz() -> ResponseReturnValue:
    return jsonify(status="ok")


@health.get("/readyz")
def readyz() -> ResponseReturnValue:
    try:
        current_app.extensions["chat"].store.ping()
    except StoreUnavailable as error:
        return error_response(503, "not_ready", f"Supabase is not reachable: {error}")
    return jsonify(status="ready")
