"""Which tokens Realtime accepts, and the exact words it uses when it refuses one.

A connection's `apikey` and every channel's `access_token` must be a JWT signed by the project
(here: the stack's ES256 key or the legacy HS256 secret) carrying `role` and `exp`. The claims
become the subscriber's identity for every RLS check, as `request.jwt.claims`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import jwt

from devstack.keys import JwtKeys, JwtRefused


class TokenRejected(Exception):
    """The token cannot authorize a subscriber; `str()` is the message Realtime sends."""


@dataclass(frozen=True)
class Identity:
    """Who a channel subscribes as: the JWT, its claims and the database role they name."""

    token: str
    claims: dict[str, Any]

    @property
    def role(self) -> str:
        return str(self.claims["role"])

    @property
    def expires_at(self) -> float:
        return float(self.claims["exp"])


def identity_of(keys: JwtKeys, token: Any) -> Identity:
    """Verify a token for Realtime; TokenRejected with Realtime's message otherwise."""
    if not isinstance(token, str) or not token:
        raise TokenRejected("Missing or invalid access token")
    try:
        claims = keys.verify(token)
    except JwtRefused as error:
        if str(error) == "JWT expired":
            raise TokenRejected(f"Token has expired {_seconds_since_expiry(token)} seconds ago") from None
        raise TokenRejected(f"Invalid JWT: {error}") from None
    if not isinstance(claims.get("role"), str) or not claims["role"]:
        raise TokenRejected("Fields `role` and `exp` are required in JWT")
    return Identity(token, claims)


def _seconds_since_expiry(token: str) -> int:
    """How long ago a token expired (its signature was already checked by the failed verify)."""
    try:
        exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
    except jwt.PyJWTError:
        return 0
    return max(0, int(time.time() - float(exp))) if isinstance(exp, (int, float)) else 0
