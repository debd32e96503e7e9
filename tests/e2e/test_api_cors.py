"""CORS for browser callers of /api: open in development, exactly the listed origins otherwise."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx

from devstack.service_process import ServiceProcess
from devstack.stack import LocalStack
from tests.support.processes import start_service
from tests.support.users import sign_up

APP = "https://app.example"
EVIL = "https://evil.example"


def preflight(base_url: str, origin: str, path: str | None = None) -> httpx.Response:
    return httpx.options(
        f"{base_url}{path or f'/api/chat/{uuid.uuid4()}'}",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )


def allowed_headers(response: httpx.Response) -> set[str]:
    return {h.strip().lower() for h in response.headers.get("Access-Control-Allow-Headers", "").split(",")}


def test_development_default_allows_any_origin(service: ServiceProcess) -> None:
    response = preflight(service.url, APP)
    assert response.status_code in (200, 204)
    assert response.headers.get("Access-Control-Allow-Origin") in ("*", APP)
    assert "POST" in response.headers.get("Access-Control-Allow-Methods", "")
    assert {"authorization", "content-type"} <= allowed_headers(response)


def test_development_default_error_responses_are_readable_by_the_browser(service: ServiceProcess) -> None:
    """A browser can only read a 401's body (and Retry-After of a 429/503) if CORS covers it too."""
    response = httpx.get(f"{service.url}/api/conversations", headers={"Origin": APP})
    assert response.status_code == 401
    assert response.headers.get("Access-Control-Allow-Origin") in ("*", APP)
    exposed = {h.strip().lower() for h in response.headers.get("Access-Control-Expose-Headers", "").split(",")}
    assert {"retry-after", "x-request-id"} <= exposed


def test_listed_origin_is_allowed_and_others_are_not(stack: LocalStack, state_dir: Path) -> None:
    strict = start_service(stack, state_dir, CORS_ORIGINS=APP)
    try:
        allowed = preflight(strict.url, APP)
        assert allowed.status_code in (200, 204)
        assert allowed.headers.get("Access-Control-Allow-Origin") == APP
        assert "POST" in allowed.headers.get("Access-Control-Allow-Methods", "")
        assert {"authorization", "content-type"} <= allowed_headers(allowed)

        for path in (None, "/api/conversations"):
            refused = preflight(strict.url, EVIL, path)
            assert "Access-Control-Allow-Origin" not in refused.headers
            assert "Access-Control-Allow-Methods" not in refused.headers

        user = sign_up(stack)
        with user.api(strict.url) as api:
            from_app = api.get("/api/conversations", headers={"Origin": APP})
            assert from_app.status_code == 200
            assert from_app.headers.get("Access-Control-Allow-Origin") == APP
            from_evil = api.get("/api/conversations", headers={"Origin": EVIL})
            assert "Access-Control-Allow-Origin" not in from_evil.headers
    finally:
        strict.stop()


def test_cors_applies_to_api_only(service: ServiceProcess) -> None:
    """The webhook door is server-to-server: no browser origin is ever allowed on it."""
    response = preflight(service.url, APP, "/webhooks/messages")
    assert "Access-Control-Allow-Origin" not in response.headers
