"""Users: signed up through supabase-py as a frontend would, or given a token signed with the
stack's keys directly; and HTTP clients that call the REST door as them."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import httpx
from supabase import ClientOptions, create_client

from devstack.keys import JwtKeys
from devstack.stack import LocalStack


@dataclass
class SignedUpUser:
    user_id: str
    access_token: str

    def api(self, base_url: str) -> httpx.Client:
        return httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {self.access_token}"}, timeout=30
        )


def sign_up(stack: LocalStack) -> SignedUpUser:
    """A user signed up through supabase-py against the local gateway, as a frontend would."""
    assert stack.keys is not None
    client = create_client(
        stack.api_url, stack.keys.api_key("anon"),
        options=ClientOptions(auto_refresh_token=False, persist_session=False),
    )
    response = client.auth.sign_up({"email": f"{uuid.uuid4()}@example.test", "password": "correct horse battery"})
    assert response.session is not None and response.user is not None
    return SignedUpUser(response.user.id, response.session.access_token)


def user_token(keys: JwtKeys, user_id: str, lifetime: int = 3600) -> str:
    """An access token for `user_id`, as the stack's Auth stand-in would issue it."""
    now = int(time.time())
    return keys.sign_user_token(
        {"sub": user_id, "role": "authenticated", "aud": "authenticated", "iat": now, "exp": now + lifetime,
         "iss": keys.issuer, "email": f"{user_id}@example.test"}
    )
