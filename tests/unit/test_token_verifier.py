"""Access-token verification in process, against a key set held in memory (the project's JWKS
is outside the system): what is accepted, and the exact reason each forgery is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from api.auth import InvalidToken, TokenVerifier
from chat.caller import Caller
from chat.errors import StoreUnavailable

ISSUER = "http://project.test/auth/v1"
LEGACY_SECRET = "legacy-jwt-secret-of-at-least-32-bytes"
PROJECT_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_KEY = ec.generate_private_key(ec.SECP256R1())


class KeySet:
    """The project's published keys by id, as PyJWKClient returns them; `down` fails the fetch."""

    def __init__(self, down: bool = False) -> None:
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(PROJECT_KEY.public_key()))
        self.keys = jwt.PyJWKSet([{**jwk, "kid": "project", "alg": "ES256", "use": "sig"}])
        self.down = down

    def get_signing_key(self, kid: str) -> jwt.PyJWK:
        if self.down:
            raise jwt.PyJWKClientConnectionError("connection refused")
        for key in self.keys.keys:
            if key.key_id == kid:
                return key
        raise jwt.PyJWKClientError(f"no key {kid}")


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"sub": "user-1", "role": "authenticated", "aud": "authenticated", "iss": ISSUER, "exp": now + 600}
    return {key: value for key, value in {**base, **changes}.items() if value is not None}


# The anon and service_role API keys as Supabase issues them (devstack/keys.py): no sub, no aud.
API_KEY_CLAIMS = {"iss": "supabase-demo", "iat": int(time.time()) - 60, "exp": int(time.time()) + 3600}


def es256(payload: dict[str, Any], key: Any = PROJECT_KEY, kid: str | None = "project") -> str:
    return jwt.encode(payload, key, algorithm="ES256", headers={"kid": kid} if kid else {})


def hs256(payload: dict[str, Any], secret: str = LEGACY_SECRET, kid: str | None = None) -> str:
    return jwt.encode(payload, secret, algorithm="HS256", headers={"kid": kid} if kid else None)


def verifier(legacy_secret: str | None = LEGACY_SECRET, down: bool = False) -> TokenVerifier:
    return TokenVerifier(ISSUER, KeySet(down), legacy_secret)


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(es256(claims()), id="ES256 signed with the project's key"),
        pytest.param(hs256(claims()), id="HS256 under the legacy secret"),
    ],
)
def test_a_signed_in_users_token_gives_the_caller(token: str) -> None:
    assert verifier().verify(token) == Caller("user-1", token)


def hs256_by_hand(payload: dict[str, Any], secret: bytes, kid: str) -> str:
    """HS256 keyed with whatever bytes an attacker likes (PyJWT refuses to sign with a public key)."""
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    signing_input = f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT', 'kid': kid}).encode())}.{b64(json.dumps(payload).encode())}"
    return f"{signing_input}.{b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())}"


PUBLIC_PEM = PROJECT_KEY.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        pytest.param(es256(claims(exp=int(time.time()) - 5)), "The access token has expired; sign in again.", id="expired"),
        pytest.param(es256(claims(aud="anon")), "The access token is not valid (InvalidAudienceError).", id="wrong audience"),
        pytest.param(es256(claims(iss="http://elsewhere/auth/v1")), "The access token is not valid (InvalidIssuerError).",
                     id="another project's issuer"),
        pytest.param(es256(claims(exp=None)), "The access token is not valid (MissingRequiredClaimError).", id="no exp"),
        pytest.param(es256(claims(sub=None)), "The access token is not valid (MissingRequiredClaimError).", id="no sub"),
        pytest.param(es256(claims(role="anon")), "The access token is not a signed-in user's token.", id="anon role"),
        pytest.param(es256(claims(role="service_role")), "The access token is not a signed-in user's token.",
                     id="service_role role"),
        pytest.param(hs256(claims(role="service_role")), "The access token is not a signed-in user's token.",
                     id="service_role role, legacy HS256"),
        pytest.param(hs256(API_KEY_CLAIMS | {"role": "anon"}), "The access token is not valid (MissingRequiredClaimError).",
                     id="the project's anon API key"),
        pytest.param(hs256(API_KEY_CLAIMS | {"role": "service_role"}),
                     "The access token is not valid (MissingRequiredClaimError).", id="the project's service_role API key"),
        pytest.param(es256(claims(), key=OTHER_KEY), "The access token is not valid (InvalidSignatureError).",
                     id="signed with another key under the project's kid"),
        pytest.param(es256(claims(), kid=None), "The access token names no signing key.", id="no kid"),
        pytest.param(es256(claims(), kid="unknown"), "The access token is not valid (PyJWKClientError).", id="unknown kid"),
        pytest.param(hs256(claims(), secret="a-wrong-secret-of-at-least-32-bytes!"),
                     "The access token is not valid (InvalidSignatureError).", id="HS256 with a wrong secret"),
        pytest.param(hs256_by_hand(claims(), PUBLIC_PEM, "project"), "The access token is not valid (InvalidSignatureError).",
                     id="algorithm confusion: HS256 keyed with the public key"),
        pytest.param(jwt.encode(claims(), None, algorithm="none"), "Tokens signed with 'none' are not accepted.", id="alg none"),
        pytest.param("not.a.token", "The access token is not valid (DecodeError).", id="garbage"),
    ],
)
def test_forged_or_unusable_tokens_are_refused_with_the_reason(token: str, reason: str) -> None:
    with pytest.raises(InvalidToken) as refused:
        verifier().verify(token)
    assert str(refused.value) == reason


@pytest.mark.parametrize(
    ("algorithm", "reason"),
    [
        pytest.param("RS256", "The access token's algorithm does not match its signing key.", id="RS256"),
        pytest.param("EdDSA", "The access token's algorithm does not match its signing key.", id="EdDSA"),
        pytest.param("ES384", "Tokens signed with 'ES384' are not accepted.", id="ES384"),
    ],
)
def test_a_token_whose_header_claims_another_algorithm_under_the_projects_kid_is_refused(
    algorithm: str, reason: str
) -> None:
    header = base64.urlsafe_b64encode(json.dumps({"alg": algorithm, "kid": "project"}).encode()).rstrip(b"=").decode()
    token = f"{header}.{es256(claims()).split('.', 1)[1]}"  # the ES256 key and signature, claimed as another algorithm
    with pytest.raises(InvalidToken) as refused:
        verifier().verify(token)
    assert str(refused.value) == reason


def test_legacy_tokens_are_refused_without_the_legacy_secret() -> None:
    with pytest.raises(InvalidToken, match="Tokens signed with 'HS256' are not accepted"):
        verifier(legacy_secret=None).verify(hs256(claims()))


def test_an_unreachable_jwks_is_a_store_outage_not_a_bad_token() -> None:
    with pytest.raises(StoreUnavailable):
        verifier(down=True).verify(es256(claims()))
