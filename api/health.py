"""Liveness and readiness for the platform's health checks, unauthenticated.

/healthz answers while the process can serve a request; /readyz also proves Supabase answers
(configuration was validated at start-up, so a running process has a complete one)."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from chat.errors import StoreUnavailable
from doors.errors import error_response
from doors.service import chat_service

health = Blueprint("health", __name__)


@health.get("/healthz")
def healthz() -> ResponseReturnValue:
    return jsonify(status="ok")


@health.get("/readyz")
def readyz() -> ResponseReturnValue:
    try:
        chat_service().check_ready()
    except StoreUnavailable as error:
        return error_response(503, "not_ready", f"Supabase is not reachable: {error}")
    return jsonify(status="ready")
