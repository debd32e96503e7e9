"""Liveness and readiness for the platform's health checks, unauthenticated.

/healthz answers while the process can serve a request (a platform restarts the machine when it
does not, so it depends on nothing else). /readyz also asks each dependency (the database
through Supabase, the model, Realtime) and names the ones that are down; its answer is cached
for READY_CACHE_SECONDS, so probes and scrapers cannot load them (configuration was validated at
start-up, so a running process has a complete one)."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from http_common.service import chat_service

health = Blueprint("health", __name__)


@health.get("/healthz")
def healthz() -> ResponseReturnValue:
    return jsonify(status="ok")


@health.get("/readyz")
def readyz() -> ResponseReturnValue:
    service = chat_service()
    checks = service.check_ready()
    down = service.down(checks)
    if not down:
        return jsonify(status="ready", checks=checks)
    reasons = "; ".join(f"{name} ({checks[name].removeprefix('down: ')})" for name in down)
    response = jsonify(
        error={"code": "not_ready", "message": f"Not ready: down: {reasons}.", "down": down}, checks=checks
    )
    response.status_code = 503
    return response
