"""One local stack per test session (real Postgres, the gateway, the pg_net stand-in, the fake
model), on free ports; every test leaves the database as it found it."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import psycopg
import pytest

from devstack.keys import JwtKeys
from devstack.migrate import prepare_database
from devstack.postgres import LocalPostgres
from devstack.quotas import GENEROUS, set_quota_defaults
from devstack.service_process import ServiceProcess
from devstack.serving import free_port
from tests.api_clients import SignedUpUser, sign_up

if TYPE_CHECKING:
    from devstack.stack import LocalStack

T = TypeVar("T")
USER_TABLES = "auth.users, public.conversations, public.messages, net.http_request_queue, net._http_response"


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A temporary folder for a stack's data and the services' logs. KEEP_TEST_STATE=1 keeps it,
    to read those logs after a failure."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    yield path
    if not os.environ.get("KEEP_TEST_STATE"):
        shutil.rmtree(path, ignore_errors=True)


UNCONFIGURED_WEBHOOK = "http://127.0.0.1:9/unconfigured"


def start_migrated_postgres(folder: Path) -> LocalPostgres:
    """A PostgreSQL on a free port, bootstrapped and migrated as `make run` does, with usage
    limits far above what tests send (the tests of the limits set their own per user)."""
    postgres = LocalPostgres(folder / "postgres" / "data", free_port())
    prepare_database(postgres.start())
    set_quota_defaults(postgres.superuser_url, GENEROUS)
    return postgres


def start_test_stack(folder: Path, database_url: str) -> LocalStack:
    """The stand-ins on free ports over an existing database; the webhook points nowhere until a test says."""
    from devstack.stack import LocalStack, StackConfig

    config = StackConfig(
        state_dir=folder,
        api_port=free_port(),
        model_port=free_port(),
        database_url=database_url,
        trust_local_logins=True,
        webhook_url=UNCONFIGURED_WEBHOOK,
    )
    return LocalStack(config).start()


@pytest.fixture(scope="session")
def state_dir() -> Iterator[Path]:
    with scratch_dir("ai-chat-test-") as path:
        yield path


@pytest.fixture(scope="session")
def postgres_server(state_dir: Path) -> Iterator[LocalPostgres]:
    """A real PostgreSQL with the Supabase bootstrap and our migrations, for the whole session."""
    postgres = start_migrated_postgres(state_dir)
    yield postgres
    postgres.stop()


@pytest.fixture(scope="session")
def database_url(postgres_server: LocalPostgres) -> str:
    """The session database, as its superuser (supabase_admin, as on Supabase)."""
    return postgres_server.superuser_url


@pytest.fixture(scope="session")
def stack(state_dir: Path, database_url: str) -> Iterator[LocalStack]:
    """The gateway, the pg_net stand-in and the fake model, over the session's database."""
    running = start_test_stack(state_dir, database_url)
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


# ----------------------------------------------------------------------------- the service

SERVICE_TEST_SETTINGS = {
    "APP_ENV": "test",
    "OPENAI_MODEL": "fake-model",
    "OPENAI_MODELS": "fake-model-2",
    "OPENAI_TIMEOUT_SECONDS": "1",
    "MODEL_MAX_ATTEMPTS": "3",
    "MODEL_RETRY_INITIAL_SECONDS": "0.02",
    "MODEL_RETRY_MAX_SECONDS": "0.2",
    "LEASE_SECONDS": "5",
    "REDRIVE_INTERVAL_SECONDS": "0.5",
    "REDRIVE_GRACE_SECONDS": "30",
    "WEB_CONCURRENCY": "1",
    "GUNICORN_THREADS": "8",
    "CONTEXT_TOKEN_BUDGET": "6000",
    "CHAT_REPLY_TIMEOUT_SECONDS": "8",
}


def service_env(stack: LocalStack, **overrides: str) -> dict[str, str]:
    return {**stack.service_environment(), **SERVICE_TEST_SETTINGS, **overrides}


def start_service(stack: LocalStack, state_dir: Path, **overrides: str) -> ServiceProcess:
    port = free_port()
    return ServiceProcess(service_env(stack, **overrides), port=port, log_path=state_dir / f"service-{port}.log").start()


@pytest.fixture(scope="session")
def service(stack: LocalStack, state_dir: Path) -> Iterator[ServiceProcess]:
    """The service as the Procfile starts it, for the whole session."""
    running = start_service(stack, state_dir)
    yield running
    running.stop()


@pytest.fixture
def live_service(service: ServiceProcess, stack: LocalStack) -> Iterator[ServiceProcess]:
    """The session's service with the database webhook pointed at it, for this test only: rows a
    later test inserts must not be answered behind its back."""
    stack.configure_webhook(f"{service.url}/webhooks/messages")
    yield service
    stack.configure_webhook(UNCONFIGURED_WEBHOOK)


class FakeModelControl:
    """The fake model's control API, as the tests use it."""

    def __init__(self, url: str) -> None:
        self.url = url

    def queue_faults(self, *faults: dict[str, object], match: str | None = None) -> None:
        httpx.post(f"{self.url}/_fake/faults", json={"faults": list(faults), "match": match}).raise_for_status()

    def set_latency(self, milliseconds: float) -> None:
        httpx.post(f"{self.url}/_fake/config", json={"latency_ms": milliseconds}).raise_for_status()

    def requests(self, match: str | None = None) -> list[dict[str, object]]:
        params = {"match": match} if match else {}
        return list(httpx.get(f"{self.url}/_fake/requests", params=params).json()["requests"])

    def reset(self) -> None:
        httpx.post(f"{self.url}/_fake/reset").raise_for_status()


@pytest.fixture
def fake_model(stack: LocalStack) -> Iterator[FakeModelControl]:
    assert stack.fake_model is not None
    control = FakeModelControl(stack.fake_model.url)
    control.reset()
    yield control
    control.reset()


def wait_until(predicate: Callable[[], T], deadline_seconds: float = 10.0, interval: float = 0.02) -> T:
    """Poll until `predicate` returns something truthy; fail with its last value at the deadline."""
    deadline = time.monotonic() + deadline_seconds
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            assert value, f"condition not met within {deadline_seconds} s (last value: {value!r})"
            return value
        time.sleep(interval)


def one_row(db: psycopg.Connection, query: str, params: tuple[object, ...] = ()) -> tuple[Any, ...]:
    row = db.execute(query, params).fetchone()
    assert row is not None
    return tuple(row)


@pytest.fixture
def alice(stack: LocalStack) -> SignedUpUser:
    """A user signed up through supabase-py against the gateway, as a frontend would."""
    return sign_up(stack)


@pytest.fixture
def bob(stack: LocalStack) -> SignedUpUser:
    """A second, unrelated user."""
    return sign_up(stack)


def pytest_addoption(parser: pytest.Parser) -> None:
    """`--long`: bigger counts in tests/torture/ (TORTURE_LONG=1 does the same)."""
    parser.addoption("--long", action="store_true", default=False, help="run tests/torture with soak-sized counts")
