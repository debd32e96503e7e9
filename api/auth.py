"""Who is calling: a Supabase access token, verified here before anything else happens.

Asymmetric tokens are checked against the project's JWKS (cached; fetched again when a token
names a key id we have not seen, which is how key rotation shows up), and HS256 tokens against
the legacy JWT secret if the project still has one. Algorithms are pinned per key type, and
exp, aud ("authenticated") and iss (the project's auth URL) are all required."""

from __future__ import annotations

from typing import Any, Protocol

import jwt
from flask import request

from chat.caller import Caller
from chat.errors import StoreUnavailable

ASYMMETRIC_ALGORITHMS = ("ES256", "RS256", "EdDSA")
AUDIENCE = "authenticated"


class InvalidToken(Exception):
    """No usable bearer token: missing, malformed, forged, expired or for another audience."""


class SigningKeys(Protocol):
    """The project's published keys by id: jwt.PyJWKClient in production (fetched and cached)."""

    def get_signing_key(self, kid: str) -> jwt.PyJWK: ...


def project_signing_keys(supabase_url: str, cache_seconds: int) -> jwt.PyJWKClient:
    """The project's JWKS, cached; a key id not in the cache fetches again (key rotation)."""
    return jwt.PyJWKClient(
        f"{auth_issuer(supabase_url)}/.well-known/jwks.json", cache_keys=True, lifespan=max(cache_seconds, 1), timeout=5
    )


def auth_issuer(supabase_url: str) -> str:
    return f"{supabase_url}/auth/v1"


class TokenVerifier:
    def __init__(self, issuer: str, signing_keys: SigningKeys, legacy_secret: str | None = None) -> None:
        self.issuer = issuer
        self.jwks = signing_keys
        self.legacy_secret = legacy_secret or None

    def verify(self, token: str) -> Caller:
        try:
            header = jwt.get_unverified_header(token)
            algorithm = header.get("alg")
            key = self._key_for(algorithm, header.get("kid"))
            claims = jwt.decode(
                token,
                key,
                algorithms=[str(algorithm)],
                audience=AUDIENCE,
                issuer=self.issuer,
                options={"require": ["exp", "sub", "aud", "iss"]},
            )
        except jwt.PyJWKClientConnectionError as error:
            raise StoreUnavailable("the project's JWKS could not be fetched") from error
        except jwt.ExpiredSignatureError:
            raise InvalidToken("The access token has expired; sign in again.") from None
        except (jwt.PyJWTError, ValueError, TypeError) as error:
            # The library's own text can include internals; the exception's name is enough to act on.
            raise InvalidToken(f"The access token is not valid ({type(error).__name__}).") from None
        if claims.get("role") != "authenticated":
            raise InvalidToken("The access token is not a signed-in user's token.")
        return Caller(user_id=str(claims["sub"]), access_token=token)

    def _key_for(self, algorithm: object, key_id: object) -> Any:
        if algorithm in ASYMMETRIC_ALGORITHMS:
            if not isinstance(key_id, str):
                raise InvalidToken("The access token names no signing key.")
            signing_key = self.jwks.get_signing_key(key_id)
            if signing_key.algorithm_name != algorithm:
                # Pinning: a token may not pick an algorithm other than the one its key is for.
                raise InvalidToken("The access token's algorithm does not match its signing key.")
            return signing_key.key
        if algorithm == "HS256" and self.legacy_secret:
            return self.legacy_secret
        raise InvalidToken(f"Tokens signed with {algorithm!r} are not accepted.")


def bearer_token() -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("Send the Supabase access token as 'Authorization: Bearer <token>'.")
    return token.strip()
