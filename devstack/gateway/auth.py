"""A GoTrue-compatible subset of Supabase Auth at /auth/v1: enough for supabase-py and
supabase-js to sign up, sign in with a password, refresh, read the user and sign out.

Users are rows in auth.users as on Supabase, with e-mail auto-confirmed (as `supabase start`
does by default). Errors use GoTrue's shape ({"code", "error_code", "msg"}) so the clients raise
their own typed exceptions.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from devstack.keys import JwtKeys, JwtRefused

MIN_PASSWORD_LENGTH = 6
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# scrypt with a small cost: this is a local stand-in, and tests create many users.
SCRYPT_COST = {"n": 2**12, "r": 8, "p": 1}

USER_COLUMNS = (
    "id, aud, role, email, email_confirmed_at, last_sign_in_at, raw_app_meta_data, "
    "raw_user_meta_data, is_anonymous, created_at, updated_at"
)


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, **SCRYPT_COST)
    return f"scrypt${salt.hex()}${digest.hex()}"


def password_matches(password: str, stored: str | None) -> bool:
    if not stored or not stored.startswith("scrypt$"):
        return False
    _, salt_hex, digest_hex = stored.split("$")
    digest = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt_hex), **SCRYPT_COST)
    return hmac.compare_digest(digest.hex(), digest_hex)


def auth_error(status: int, error_code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"code": status, "error_code": error_code, "msg": message, **extra}, status_code=status)


class AuthService:
    """The /auth/v1 endpoints over one connection pool with rights on the auth schema."""

    def __init__(self, pool: AsyncConnectionPool, keys: JwtKeys, token_lifetime_seconds: int = 3600) -> None:
        self.pool = pool
        self.keys = keys
        self.token_lifetime_seconds = token_lifetime_seconds

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/signup", self.sign_up, methods=["POST"]),
            Route("/token", self.token, methods=["POST"]),
            Route("/user", self.current_user, methods=["GET"]),
            Route("/logout", self.log_out, methods=["POST"]),
            Route("/.well-known/jwks.json", self.jwks, methods=["GET"]),
            Route("/health", self.health, methods=["GET"]),
        ]

    async def sign_up(self, request: Request) -> Response:
        body = await _json_object(request)
        if body is None:
            return auth_error(400, "bad_json", "Could not parse request body as JSON")
        email, password = body.get("email"), body.get("password")
        if not isinstance(email, str) or not EMAIL_PATTERN.match(email):
            return auth_error(400, "validation_failed", "Unable to validate email address: invalid format")
        if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
            return auth_error(
                422, "weak_password", f"Password should be at least {MIN_PASSWORD_LENGTH} characters.",
                weak_password={"reasons": ["length"]},
            )
        metadata = body.get("data") if isinstance(body.get("data"), dict) else {}
        async with self.pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                "insert into auth.users (id, aud, role, email, encrypted_password, email_confirmed_at,"
                " raw_app_meta_data, raw_user_meta_data, last_sign_in_at)"
                " values (%s, 'authenticated', 'authenticated', lower(%s), %s, now(), %s, %s, now())"
                f" on conflict (email) do nothing returning {USER_COLUMNS}",
                (
                    uuid.uuid4(),
                    email,
                    hash_password(password),
                    json.dumps({"provider": "email", "providers": ["email"]}),
                    json.dumps(metadata),
                ),
            )
            user = await cursor.fetchone()
            if user is None:
                return auth_error(422, "user_already_exists", "User already registered")
            return JSONResponse(await self._issue_session(conn, user))

    async def token(self, request: Request) -> Response:
        grant_type = request.query_params.get("grant_type")
        body = await _json_object(request)
        if body is None:
            return auth_error(400, "bad_json", "Could not parse request body as JSON")
        if grant_type == "password":
            return await self._password_grant(body)
        if grant_type == "refresh_token":
            return await self._refresh_grant(body)
        return auth_error(400, "unsupported_grant_type", "unsupported_grant_type")

    async def _password_grant(self, body: dict[str, Any]) -> Response:
        email, password = body.get("email"), body.get("password")
        async with self.pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                f"select {USER_COLUMNS}, encrypted_password from auth.users where email = lower(%s)",
                (str(email),),
            )
            user = await cursor.fetchone()
            if user is None or not isinstance(password, str) or not password_matches(
                password, user.pop("encrypted_password")
            ):
                return auth_error(400, "invalid_credentials", "Invalid login credentials")
            await conn.execute("update auth.users set last_sign_in_at = now() where id = %s", (user["id"],))
            return JSONResponse(await self._issue_session(conn, user))

    async def _refresh_grant(self, body: dict[str, Any]) -> Response:
        async with self.pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                "update auth.refresh_tokens set revoked = true"
                " where token = %s and not revoked returning user_id",
                (str(body.get("refresh_token")),),
            )
            row = await cursor.fetchone()
            if row is None:
                return auth_error(400, "refresh_token_not_found", "Invalid Refresh Token: Refresh Token Not Found")
            await cursor.execute(f"select {USER_COLUMNS} from auth.users where id = %s", (row["user_id"],))
            user = await cursor.fetchone()
            if user is None:
                return auth_error(400, "user_not_found", "User from sub claim in JWT does not exist")
            return JSONResponse(await self._issue_session(conn, user))

    async def current_user(self, request: Request) -> Response:
        claims = self._bearer_claims(request)
        if claims is None or not claims.get("sub"):
            return auth_error(401, "bad_jwt", "invalid JWT: unable to parse or verify signature")
        async with self.pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(f"select {USER_COLUMNS} from auth.users where id = %s", (claims["sub"],))
            user = await cursor.fetchone()
        if user is None:
            return auth_error(403, "user_not_found", "User from sub claim in JWT does not exist")
        return JSONResponse(_user_json(user))

    async def log_out(self, request: Request) -> Response:
        claims = self._bearer_claims(request)
        if claims is None or not claims.get("sub"):
            return auth_error(401, "bad_jwt", "invalid JWT: unable to parse or verify signature")
        async with self.pool.connection() as conn:
            await conn.execute("update auth.refresh_tokens set revoked = true where user_id = %s", (claims["sub"],))
        return Response(status_code=204)

    async def jwks(self, request: Request) -> Response:
        return JSONResponse(self.keys.jwks())

    async def health(self, request: Request) -> Response:
        return JSONResponse({"name": "GoTrue (devstack stand-in)", "description": "local Supabase Auth"})

    async def _issue_session(self, conn: Any, user: dict[str, Any]) -> dict[str, Any]:
        now = int(time.time())
        refresh_token = secrets.token_urlsafe(24)
        await conn.execute(
            "insert into auth.refresh_tokens (token, user_id) values (%s, %s)", (refresh_token, user["id"])
        )
        claims = {
            "iss": self.keys.issuer,
            "sub": str(user["id"]),
            "aud": "authenticated",
            "exp": now + self.token_lifetime_seconds,
            "iat": now,
            "email": user["email"],
            "phone": "",
            "app_metadata": user["raw_app_meta_data"],
            "user_metadata": user["raw_user_meta_data"],
            "role": "authenticated",
            "aal": "aal1",
            "amr": [{"method": "password", "timestamp": now}],
            "session_id": str(uuid.uuid4()),
            "is_anonymous": False,
        }
        return {
            "access_token": self.keys.sign_user_token(claims),
            "token_type": "bearer",
            "expires_in": self.token_lifetime_seconds,
            "expires_at": now + self.token_lifetime_seconds,
            "refresh_token": refresh_token,
            "user": _user_json(user),
        }

    def _bearer_claims(self, request: Request) -> dict[str, Any] | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        try:
            return self.keys.verify(token)
        except JwtRefused:
            return None


def _user_json(user: dict[str, Any]) -> dict[str, Any]:
    def iso(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "id": str(user["id"]),
        "aud": user["aud"],
        "role": user["role"],
        "email": user["email"],
        "email_confirmed_at": iso(user["email_confirmed_at"]),
        "confirmed_at": iso(user["email_confirmed_at"]),
        "last_sign_in_at": iso(user["last_sign_in_at"]),
        "app_metadata": user["raw_app_meta_data"],
        "user_metadata": user["raw_user_meta_data"],
        "identities": [],
        "is_anonymous": user["is_anonymous"],
        "created_at": iso(user["created_at"]),
        "updated_at": iso(user["updated_at"]),
    }


async def _json_object(request: Request) -> dict[str, Any] | None:
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None
