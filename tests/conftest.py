"""One local stack per test session (real Postgres, the gateway, the pg_net stand-in, the fake
model), on free ports; every test leaves the database as it found it."""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest

from devstack.keys import JwtKeys
from devstack.migrate import prepare_database
from devstack.postgres import LocalPostgres
from devstack.serving import free_port

if TYPE_CHECKING:
    from devstack.stack import LocalStack

USER_TABLES = "auth.users, public.conversations, public.messages, net.http_request_queue, net._http_response"


@pytest.fixture(scope="session")
def state_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="ai-chat-test-"))


@pytest.fixture(scope="session")
def database_url(state_dir: Path) -> Iterator[str]:
    """A real PostgreSQL with the Supabase bootstrap and our migrations, for the whole session."""
    postgres = LocalPostgres(state_dir / "postgres" / "data", free_port())
    url = postgres.start()
    prepare_database(url)
    yield url
    postgres.stop()


@pytest.fixture(scope="session")
def stack(state_dir: Path, database_url: str) -> Iterator[LocalStack]:
    """The gateway, the pg_net stand-in and the fake model, over the session's database."""
    from devstack.stack import LocalStack, StackConfig

    config = StackConfig(
        state_dir=state_dir,
        api_port=free_port(),
        model_port=free_port(),
        database_url=database_url,
        webhook_url="http://127.0.0.1:9/unconfigured",
    )
    running = LocalStack(config).start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def jwt_keys(stack: LocalStack) -> JwtKeys:
    assert stack.keys is not None
    return stack.keys


@pytest.fixture(scope="session")
def gateway_url(stack: LocalStack) -> str:
    return stack.api_url


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection]:
    """A superuser connection in autocommit, for arranging and inspecting rows."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture(autouse=True)
def _clean_database(request: pytest.FixtureRequest) -> Iterator[None]:
    """Empty every table a test may have written, after each test that used the stack."""
    yield
    if "database_url" not in request.fixturenames:
        return
    with psycopg.connect(request.getfixturevalue("database_url"), autocommit=True) as conn:
        conn.execute(f"truncate {USER_TABLES} cascade")


class Role:
    """Runs SQL as one of Supabase's API roles with that role's JWT claims, as PostgREST does."""

    def __init__(self, database_url: str, role: str, user_id: str | None = None) -> None:
        self.database_url = database_url
        self.role = role
        self.user_id = user_id

    def execute(self, query: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        """Run one statement in its own transaction; raise the database's error as it is."""
        claims = {"role": self.role, **({"sub": self.user_id, "aud": "authenticated"} if self.user_id else {})}
        with psycopg.connect(self.database_url) as conn:
            conn.execute(f"set local role {self.role}")
            conn.execute("select set_config('request.jwt.claims', %s, true)", (json.dumps(claims),))
            cursor = conn.execute(query, params)  # type: ignore[arg-type]
            return cursor.fetchall() if cursor.description else []


def insert_user(conn: psycopg.Connection, email: str | None = None) -> str:
    user_id = str(uuid.uuid4())
    conn.execute(
        "insert into auth.users (id, aud, role, email) values (%s, 'authenticated', 'authenticated', %s)",
        (user_id, email or f"{user_id}@example.test"),
    )
    return user_id


def user_token(keys: JwtKeys, user_id: str, lifetime: int = 3600) -> str:
    now = int(time.time())
    return keys.sign_user_token(
        {"sub": user_id, "role": "authenticated", "aud": "authenticated", "iat": now, "exp": now + lifetime,
         "iss": keys.issuer, "email": f"{user_id}@example.test"}
    )
