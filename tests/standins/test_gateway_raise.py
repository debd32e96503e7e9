"""The gateway answers a function's own HTTP status as PostgREST does: SQLSTATE PTnnn is status
nnn, and RAISE SQLSTATE 'PGRST' with a JSON MESSAGE and DETAIL sets the body, status and
headers; a malformed one is PostgREST's PGRST121 (src/PostgREST/Error/PgError/ServerError.hs)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import psycopg
import pytest

from devstack.keys import JwtKeys

RAISES = {
    "pt429": "raise sqlstate 'PT429' using message = 'slow down', detail = 'd', hint = 'h'",
    "pt_not_a_status": "raise sqlstate 'PTABC' using message = 'odd'",
    "pgrst": """raise sqlstate 'PGRST' using
        message = '{"code": "quota_exceeded", "message": "Too many", "details": "{\\"limit\\": 1}", "hint": "Wait"}',
        detail = '{"status": 429, "headers": {"Retry-After": "42", "X-Extra": "yes"}}'""",
    "pgrst_bad_message": "raise sqlstate 'PGRST' using message = 'not json', detail = '{\"status\": 400, \"headers\": {}}'",
    "pgrst_no_detail": "raise sqlstate 'PGRST' using message = '{\"code\": \"c\", \"message\": \"m\"}'",
    "pgrst_no_headers": "raise sqlstate 'PGRST' using message = '{\"code\": \"c\", \"message\": \"m\"}', "
    "detail = '{\"status\": 418}'",
}


@pytest.fixture
def raising_functions(db: psycopg.Connection) -> Iterator[None]:
    for name, statement in RAISES.items():
        db.execute(
            f"create function public.gateway_test_{name}() returns void language plpgsql as $f$ begin {statement}; end $f$"
        )
    yield
    for name in RAISES:
        db.execute(f"drop function public.gateway_test_{name}()")


@pytest.mark.parametrize(
    ("name", "status", "body", "headers"),
    [
        pytest.param("pt429", 429, {"code": "PT429", "message": "slow down", "details": "d", "hint": "h"}, {},
                     id="PTnnn-is-the-status"),
        pytest.param("pt_not_a_status", 500, {"code": "PTABC", "message": "odd", "details": None, "hint": None}, {},
                     id="PT-without-a-number-is-500"),
        pytest.param("pgrst", 429, {"code": "quota_exceeded", "message": "Too many", "details": '{"limit": 1}',
                                    "hint": "Wait"}, {"retry-after": "42", "x-extra": "yes"}, id="PGRST-full-control"),
        pytest.param("pgrst_bad_message", 500, {"code": "PGRST121", "details": "Invalid JSON value for MESSAGE: 'not json'"},
                     {}, id="PGRST-message-not-json"),
        pytest.param("pgrst_no_detail", 500, {"code": "PGRST121", "details": "DETAIL is missing in the RAISE statement"},
                     {}, id="PGRST-without-detail"),
        pytest.param("pgrst_no_headers", 500, {"code": "PGRST121"}, {}, id="PGRST-detail-without-headers"),
    ],
)
def test_raised_status_body_and_headers(
    raising_functions: None, gateway_url: str, jwt_keys: JwtKeys,
    name: str, status: int, body: dict[str, object], headers: dict[str, str],
) -> None:
    response = httpx.post(f"{gateway_url}/rest/v1/rpc/gateway_test_{name}", headers={"apikey": jwt_keys.api_key("anon")})
    assert response.status_code == status, response.text
    answered = response.json()
    assert {key: answered[key] for key in body} == body
    assert {key: response.headers.get(key) for key in headers} == headers
