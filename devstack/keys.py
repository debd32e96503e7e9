"""The local stack's JWT keys: what Supabase Auth signs with and what PostgREST trusts.

Like a current Supabase project, user access tokens are signed asymmetrically (ES256, public key
at /auth/v1/.well-known/jwks.json) while the anon and service-role API keys are long-lived HS256
tokens under the legacy JWT secret, which is also still accepted for user tokens.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from devstack.private_files import read_private, write_private

# The same default secret `supabase start` uses; local only, never on a real project.
DEFAULT_LEGACY_SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"
API_KEY_ISSUED_AT = 1_764_000_000  # 2025-11-24
API_KEY_LIFETIME_SECONDS = 20 * 365 * 24 * 3600
ACCEPTED_ALGORITHMS = ["ES256", "HS256"]


VERIFIED_CACHE_SIZE = 10_000


class JwtRefused(Exception):
    """The bearer token is malformed, forged, expired or signed by a key we do not hold."""


@dataclass(frozen=True)
class JwtKeys:
    legacy_secret: str
    signing_key: ec.EllipticCurvePrivateKey
    key_id: str
    issuer: str
    verified: dict[str, dict[str, Any]] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def generate(cls, issuer: str, legacy_secret: str = DEFAULT_LEGACY_SECRET) -> JwtKeys:
        return cls(legacy_secret, ec.generate_private_key(ec.SECP256R1()), uuid.uuid4().hex[:16], issuer)

    @classmethod
    def load_or_create(cls, state_dir: Path, issuer: str, legacy_secret: str = DEFAULT_LEGACY_SECRET) -> JwtKeys:
        """Keep the signing key across restarts of `make run`, so issued sessions stay valid."""
        key_file = state_dir / "jwt-signing-key.json"
        if key_file.exists():
            saved = json.loads(read_private(key_file))
            private_key = serialization.load_pem_private_key(saved["pem"].encode(), password=None)
            assert isinstance(private_key, ec.EllipticCurvePrivateKey)
            return cls(legacy_secret, private_key, saved["kid"], issuer)
        keys = cls.generate(issuer, legacy_secret)
        state_dir.mkdir(parents=True, exist_ok=True)
        pem = keys.signing_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        write_private(key_file, json.dumps({"kid": keys.key_id, "pem": pem}))
        return keys

    def sign_user_token(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.signing_key, algorithm="ES256", headers={"kid": self.key_id})

    def sign_legacy_token(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.legacy_secret, algorithm="HS256")

    def api_key(self, role: str) -> str:
        """The anon or service_role key, as `supabase status` prints them: fixed claims, so the
        same secret always gives the same keys and they survive restarts, as `supabase start`'s do."""
        return self.sign_legacy_token(
            {"iss": "supabase-demo", "role": role, "iat": API_KEY_ISSUED_AT,
             "exp": API_KEY_ISSUED_AT + API_KEY_LIFETIME_SECONDS}
        )

    def verify(self, token: str) -> dict[str, Any]:
        """Claims of a token signed by one of our keys, with exp checked (PostgREST's rules).

        Verified tokens are remembered until they expire, as PostgREST's JWT cache does: an ES256
        check costs more CPU than the rest of a typical request."""
        cached = self.verified.get(token)
        if cached is not None and cached["exp"] > time.time():
            return dict(cached)
        claims = self._verify_signature(token)
        if len(self.verified) >= VERIFIED_CACHE_SIZE:
            self.verified.clear()
        self.verified[token] = claims
        return dict(claims)

    def _verify_signature(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
            algorithm = header.get("alg")
            if algorithm == "ES256":
                if header.get("kid") not in (None, self.key_id):
                    raise JwtRefused("No suitable key or wrong key type")
                key: Any = self.signing_key.public_key()
            elif algorithm == "HS256":
                key = self.legacy_secret
            else:
                raise JwtRefused(f"Wrong or unsupported encoding algorithm: {algorithm}")
            claims: dict[str, Any] = jwt.decode(
                token, key, algorithms=ACCEPTED_ALGORITHMS, options={"verify_aud": False, "require": ["exp"]}
            )
        except jwt.ExpiredSignatureError as error:
            raise JwtRefused("JWT expired") from error
        except jwt.PyJWTError as error:
            raise JwtRefused(str(error) or "Invalid JWT") from error
        return claims

    def jwks(self) -> dict[str, Any]:
        public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.signing_key.public_key()))
        public.update({"kid": self.key_id, "alg": "ES256", "use": "sig", "key_ops": ["verify"]})
        return {"keys": [public]}
