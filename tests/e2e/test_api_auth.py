"""Who may call the REST door, through the running service and the project's real keys: a forged
or stale token gets 401 and changes nothing (one per route family here; every forgery and its
reason in unit/test_token_verifier.py and unit/test_doors.py); real user tokens (ES256 from
Supabase Auth, legacy HS256) are accepted; health needs no token; an unreachable Supabase is a
503, never a 500."""

from __future__ import annotations

import http.client
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from devstack.keys import JwtKeys
from devstack.service_process import ServiceProcess
from devstack.stack import LocalStack
from tests.support.database import insert_user, one_row
from tests.support.processes import start_service
from tests.support.users import SignedUpUser

UNREACHABLE_SUPABASE = "http://127.0.0.1:9"
AuthorizationFor = Callable[[JwtKeys, str], "str | None"]


def claims_for(keys: JwtKeys, user_id: str, **overrides: Any) -> dict[str, Any]:
    """The claims Supabase Auth puts in a signed-in user's access token, with `overrides`."""
    now = int(time.time())
    claims = {"sub": user_id, "role": "authenticated", "aud": "authenticated", "iss": keys.issuer, "iat": now,
              "exp": now + 3600, "email": f"{user_id}@example.test"}
    claims.update(overrides)
    return claims


def raw_request(base_url: str, method: str, path: str, authorization: str | None, body: bytes | None = None
                ) -> tuple[int, dict[str, str], Any]:
    """One request through http.client, which sends an Authorization header byte for byte (httpx
    refuses a value with trailing whitespace such as 'Bearer ')."""
    url = urlsplit(base_url)
    connection = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
    try:
        connection.putrequest(method, path)
        if authorization is not None:
            connection.putheader("Authorization", authorization)
        if body is not None:
            connection.putheader("Content-Type", "application/json")
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        payload = response.read()
        headers = {name.lower(): value for name, value in response.getheaders()}
        return response.status, headers, json.loads(payload) if payload else None
    finally:
        connection.close()


def signed_by_another_key(keys: JwtKeys, user_id: str, key_id: str) -> str:
    other = ec.generate_private_key(ec.SECP256R1())
    return "Bearer " + jwt.encode(claims_for(keys, user_id), other, algorithm="ES256", headers={"kid": key_id})


# One refused token per route family, proving the running service checks tokens against the
# project's real JWKS (the stand-in GoTrue's); every other forgery, and the reason it is refused,
# is a row of tests/unit/test_token_verifier.py, and the door's 401 for each a row of
# tests/unit/test_doors.py (test_the_rest_door_refuses_without_a_good_token,
# test_every_rest_route_refuses_without_a_good_token).
ATTACKS: dict[str, AuthorizationFor] = {
    "wrong-key-real-kid": lambda keys, user: signed_by_another_key(keys, user, keys.key_id),
    "unknown-kid": lambda keys, user: signed_by_another_key(keys, user, uuid.uuid4().hex[:16]),
    "expired": lambda keys, user: "Bearer " + keys.sign_user_token(
        claims_for(keys, user, iat=int(time.time()) - 7200, exp=int(time.time()) - 60)),
}


def user_token_for(keys: JwtKeys, user_id: str) -> str:
    return "Bearer " + keys.sign_user_token(claims_for(keys, user_id))


def insert_conversation(db: psycopg.Connection, user_id: str) -> str:
    return str(one_row(
        db, "insert into public.conversations (user_id, title) values (%s, 'mine') returning id", (user_id,)
    )[0])


def row_counts(db: psycopg.Connection) -> tuple[int, int]:
    return one_row(
        db, "select (select count(*) from public.conversations), (select count(*) from public.messages)"
    )


def assert_invalid_token(status: int, headers: dict[str, str], body: Any) -> None:
    assert status == 401, body
    assert headers.get("www-authenticate", "").startswith("Bearer"), headers
    assert headers.get("content-type", "").startswith("application/json")
    assert set(body) == {"error"}
    assert body["error"]["code"] == "invalid_token"
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


def test_send_message_refuses_a_forged_token_and_inserts_nothing(
    service: ServiceProcess, stack: LocalStack, alice: SignedUpUser, db: psycopg.Connection
) -> None:
    assert stack.keys is not None
    conversation_id = insert_conversation(db, alice.user_id)
    authorization = ATTACKS["wrong-key-real-kid"](stack.keys, alice.user_id)
    status, headers, body = raw_request(
        service.url, "POST", f"/api/chat/{conversation_id}", authorization, json.dumps({"message": "forged"}).encode()
    )
    assert_invalid_token(status, headers, body)
    assert row_counts(db) == (1, 0)


def test_list_conversations_refuses_an_expired_token_saying_so(
    service: ServiceProcess, stack: LocalStack, alice: SignedUpUser, db: psycopg.Connection
) -> None:
    assert stack.keys is not None
    insert_conversation(db, alice.user_id)
    status, headers, body = raw_request(service.url, "GET", "/api/conversations", ATTACKS["expired"](stack.keys, alice.user_id))
    assert_invalid_token(status, headers, body)
    assert "expired" in body["error"]["message"]
    assert "conversations" not in body
    assert row_counts(db) == (1, 0)


def test_refused_token_does_not_burn_a_valid_one(
    service: ServiceProcess, stack: LocalStack, alice: SignedUpUser
) -> None:
    """An unknown kid makes the verifier refetch the JWKS; the real key must still verify afterwards."""
    assert stack.keys is not None
    forged = ATTACKS["unknown-kid"](stack.keys, alice.user_id)
    assert raw_request(service.url, "GET", "/api/conversations", forged)[0] == 401
    assert alice.api(service.url).get("/api/conversations").status_code == 200


SIGNERS: dict[str, Callable[[JwtKeys, dict[str, Any]], str]] = {
    "es256-user-token": lambda keys, claims: keys.sign_user_token(claims),
    "legacy-hs256": lambda keys, claims: keys.sign_legacy_token(claims),
}


@pytest.mark.parametrize("signer", list(SIGNERS))
def test_valid_user_tokens_are_accepted(
    live_service: ServiceProcess, stack: LocalStack, db: psycopg.Connection, signer: str
) -> None:
    assert stack.keys is not None
    user_id = insert_user(db)
    claims = {"sub": user_id, "role": "authenticated", "aud": "authenticated", "iss": stack.keys.issuer,
              "exp": int(time.time()) + 600}
    token = SIGNERS[signer](stack.keys, claims)
    with httpx.Client(base_url=live_service.url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as api:
        created = api.post("/api/conversations", json={"title": signer})
        assert created.status_code == 201, created.text
        assert created.json()["user_id"] == user_id
        conversation_id = created.json()["id"]
        listed = api.get("/api/conversations")
        assert listed.status_code == 200, listed.text
        assert [c["id"] for c in listed.json()["conversations"]] == [conversation_id]
        reply = api.post(f"/api/chat/{conversation_id}", json={"message": f"hello via {signer}"})
        assert reply.status_code == 200, reply.text
        assert reply.json()["response"] == f"Echo: hello via {signer}"
    owner = one_row(db, "select user_id from public.messages where id = %s", (reply.json()["message_id"],))[0]
    assert str(owner) == user_id


def test_legacy_tokens_are_refused_without_the_legacy_secret(
    stack: LocalStack, state_dir: Path, db: psycopg.Connection
) -> None:
    """A project that has no SUPABASE_JWT_SECRET configured accepts only tokens its JWKS verifies."""
    assert stack.keys is not None
    user_id = insert_user(db)
    no_legacy = start_service(stack, state_dir, SUPABASE_JWT_SECRET="")
    try:
        legacy = "Bearer " + stack.keys.sign_legacy_token(claims_for(stack.keys, user_id))
        status, headers, body = raw_request(no_legacy.url, "GET", "/api/conversations", legacy)
        assert_invalid_token(status, headers, body)
        modern = "Bearer " + stack.keys.sign_user_token(claims_for(stack.keys, user_id))
        assert raw_request(no_legacy.url, "GET", "/api/conversations", modern)[0] == 200
    finally:
        no_legacy.stop()


def test_bearer_scheme_is_case_insensitive(service: ServiceProcess, alice: SignedUpUser) -> None:
    status, _, body = raw_request(service.url, "GET", "/api/conversations", f"bearer {alice.access_token}")
    assert status == 200, body


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/healthz", {"status": "ok"}),
        ("/readyz", {"status": "ready", "checks": {"database": "ok", "model": "ok", "realtime": "ok"}}),
    ],
)
def test_health_needs_no_token(service: ServiceProcess, path: str, body: dict[str, object]) -> None:
    response = httpx.get(f"{service.url}{path}")
    assert response.status_code == 200
    assert response.json() == body


def test_unreachable_supabase_is_503_not_500(
    stack: LocalStack, state_dir: Path, alice: SignedUpUser, db: psycopg.Connection
) -> None:
    assert stack.keys is not None
    cut_off = start_service(stack, state_dir, SUPABASE_URL=UNREACHABLE_SUPABASE)
    try:
        assert httpx.get(f"{cut_off.url}/healthz").status_code == 200
        ready = httpx.get(f"{cut_off.url}/readyz")
        assert ready.status_code == 503
        assert ready.json()["error"]["code"] == "not_ready"
        # Realtime is reached through the same (unreachable) project URL; the model is not.
        assert ready.json()["error"]["down"] == ["database", "realtime"]
        assert ready.json()["checks"]["model"] == "ok"

        # An ES256 token needs the JWKS, which cannot be fetched.
        chat = alice.api(cut_off.url).post(f"/api/chat/{uuid.uuid4()}", json={"message": "anyone there?"})
        assert chat.status_code == 503, chat.text
        assert chat.json()["error"]["code"] == "supabase_unavailable"
        assert chat.headers["Retry-After"] == "5"

        # A legacy token for that project verifies locally; then PostgREST cannot be reached.
        legacy = stack.keys.sign_legacy_token(
            claims_for(stack.keys, alice.user_id, iss=f"{UNREACHABLE_SUPABASE}/auth/v1")
        )
        listed = httpx.get(f"{cut_off.url}/api/conversations", headers={"Authorization": f"Bearer {legacy}"})
        assert listed.status_code == 503, listed.text
        assert listed.json()["error"]["code"] == "supabase_unavailable"

        # A forged token is still refused first, whatever Supabase's state.
        status, headers, body = raw_request(cut_off.url, "GET", "/api/conversations", "Bearer abc.def")
        assert_invalid_token(status, headers, body)
    finally:
        cut_off.stop()
    assert row_counts(db) == (0, 0)
