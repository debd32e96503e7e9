"""The Auth stand-in through supabase-py itself: sign-up, password sign-in, refresh, user, sign-out,
and the JWKS that verifies the tokens it issues; errors arrive as supabase-py's own exceptions."""

from __future__ import annotations

import uuid

import httpx
import jwt
import pytest
from supabase import Client, ClientOptions, create_client
from supabase_auth.errors import AuthApiError, AuthWeakPasswordError

from devstack.stack import LocalStack

PASSWORD = "correct horse battery"


def client(stack: LocalStack) -> Client:
    assert stack.keys is not None
    return create_client(stack.api_url, stack.keys.api_key("anon"),
                         options=ClientOptions(auto_refresh_token=False, persist_session=False))


@pytest.fixture
def email() -> str:
    return f"{uuid.uuid4()}@example.test"


def test_sign_up_returns_a_session_whose_token_verifies_against_the_jwks(stack: LocalStack, email: str) -> None:
    response = client(stack).auth.sign_up({"email": email, "password": PASSWORD})
    assert response.user is not None and response.user.email == email
    assert response.session is not None
    token = response.session.access_token
    jwks = jwt.PyJWKClient(f"{stack.api_url}/auth/v1/.well-known/jwks.json")
    claims = jwt.decode(token, jwks.get_signing_key_from_jwt(token).key, algorithms=["ES256"],
                        audience="authenticated", issuer=f"{stack.api_url}/auth/v1")
    assert claims["sub"] == response.user.id
    assert claims["role"] == "authenticated"
    assert claims["email"] == email


def test_password_sign_in_and_the_session_acts_as_the_user(stack: LocalStack, email: str) -> None:
    client(stack).auth.sign_up({"email": email, "password": PASSWORD})
    user = client(stack)
    session = user.auth.sign_in_with_password({"email": email, "password": PASSWORD}).session
    assert session is not None
    conversation = user.table("conversations").insert({"title": "mine"}).execute().data[0]
    assert conversation["user_id"] == session.user.id
    assert user.auth.get_user().user.email == email  # type: ignore[union-attr]


def test_wrong_password_is_refused(stack: LocalStack, email: str) -> None:
    client(stack).auth.sign_up({"email": email, "password": PASSWORD})
    with pytest.raises(AuthApiError, match="Invalid login credentials"):
        client(stack).auth.sign_in_with_password({"email": email, "password": "not it"})


def test_unknown_user_is_refused_like_a_wrong_password(stack: LocalStack) -> None:
    with pytest.raises(AuthApiError, match="Invalid login credentials"):
        client(stack).auth.sign_in_with_password({"email": "nobody@example.test", "password": PASSWORD})


def test_signing_up_twice_is_refused(stack: LocalStack, email: str) -> None:
    client(stack).auth.sign_up({"email": email, "password": PASSWORD})
    with pytest.raises(AuthApiError, match="already registered"):
        client(stack).auth.sign_up({"email": email, "password": PASSWORD})


def test_malformed_email_is_refused(stack: LocalStack) -> None:
    with pytest.raises(AuthApiError, match="invalid format"):
        client(stack).auth.sign_up({"email": "not-an-email", "password": PASSWORD})


def test_weak_password_is_refused_with_its_reasons(stack: LocalStack) -> None:
    with pytest.raises(AuthWeakPasswordError) as raised:
        client(stack).auth.sign_up({"email": "weak@example.test", "password": "123"})
    assert raised.value.reasons == ["length"]


def test_refresh_token_is_single_use(stack: LocalStack, email: str) -> None:
    session = client(stack).auth.sign_up({"email": email, "password": PASSWORD}).session
    assert session is not None
    refreshed = client(stack).auth.refresh_session(session.refresh_token).session
    assert refreshed is not None and refreshed.access_token
    with pytest.raises(AuthApiError):
        client(stack).auth.refresh_session(session.refresh_token)


def test_sign_out_revokes_refresh_tokens(stack: LocalStack, email: str) -> None:
    user = client(stack)
    session = user.auth.sign_up({"email": email, "password": PASSWORD}).session
    assert session is not None
    response = httpx.post(f"{stack.api_url}/auth/v1/logout",
                          headers={"Authorization": f"Bearer {session.access_token}"})
    assert response.status_code == 204
    with pytest.raises(AuthApiError):
        client(stack).auth.refresh_session(session.refresh_token)
