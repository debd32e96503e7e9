"""Fixtures only: one local stack per test session (real Postgres, the gateway, the pg_net
stand-in, the fake model), on free ports, started the first time a test asks for it (tests/unit
never does); every test leaves the database as it found it. What the fixtures use lives in
tests/support/."""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest

from devstack.keys import JwtKeys
from devstack.service_process import ServiceProcess
from devstack.serving import free_port
from tests.support.ai_sdk import AI_SDK_DIR
from tests.support.browser import Browser, chromium_or_skip, keep_failure_artifacts
from tests.support.database import USER_TABLES, start_migrated_postgres
from tests.support.processes import start_service
from tests.support.realtime import ChatUser, Subscribers, chat_user, closing, node_or_skip
from tests.support.stack import UNCONFIGURED_WEBHOOK, FakeModelControl, scratch_dir, start_test_stack
from tests.support.users import SignedUpUser, sign_up

if TYPE_CHECKING:
    from devstack.postgres import LocalPostgres
    from devstack.stack import LocalStack


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


@pytest.fixture(scope="session")
def service(stack: LocalStack, state_dir: Path) -> Iterator[ServiceProcess]:
    """The service as the Procfile starts it, for the whole session, without its re-drive sweep:
    a session-long sweep would claim the stalled and expired messages other tests arrange in the
    session database while they look at them (as `live_service` points the webhook at it only for
    the test that asks). Tests of the sweep start a service of their own, which does sweep."""
    running = start_service(stack, state_dir, REDRIVE_INTERVAL_SECONDS="0")
    yield running
    running.stop()


@pytest.fixture
def live_service(service: ServiceProcess, stack: LocalStack) -> Iterator[ServiceProcess]:
    """The session's service with the database webhook pointed at it, for this test only: rows a
    later test inserts must not be answered behind its back."""
    stack.configure_webhook(f"{service.url}/webhooks/messages")
    yield service
    stack.configure_webhook(UNCONFIGURED_WEBHOOK)


@pytest.fixture
def fake_model(stack: LocalStack) -> Iterator[FakeModelControl]:
    assert stack.fake_model is not None
    control = FakeModelControl(stack.fake_model.url)
    control.reset()
    yield control
    control.reset()


@pytest.fixture
def alice(stack: LocalStack) -> SignedUpUser:
    """A user signed up through supabase-py against the gateway, as a frontend would."""
    return sign_up(stack)


@pytest.fixture
def bob(stack: LocalStack) -> SignedUpUser:
    """A second, unrelated user."""
    return sign_up(stack)


@pytest.fixture
def owner(stack: LocalStack, db: psycopg.Connection) -> ChatUser:
    """A user signed up through the gateway's Auth who owns one conversation (the Realtime tests)."""
    return chat_user(stack, db)


@pytest.fixture
def stranger(stack: LocalStack, db: psycopg.Connection) -> ChatUser:
    """Another user with a conversation of their own, who must see nothing of the owner's."""
    return chat_user(stack, db)


@pytest.fixture
def realtime_clients(database_url: str) -> Iterator[Subscribers]:
    """Every Realtime client a test opens, closed at its end; broadcasts it stored are removed."""
    yield from closing()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("delete from realtime.messages")


@pytest.fixture(scope="session")
def node_binary() -> str:
    """node, with supabase-js installed from its lockfile; skips without node, fails on CI."""
    return node_or_skip()


@pytest.fixture(scope="session")
def ai_sdk_node() -> str:
    """node, with the Vercel AI SDK (`ai`, pinned) installed from its lockfile; skips without node, fails on CI."""
    return node_or_skip(AI_SDK_DIR, "the Vercel AI SDK")


@pytest.fixture(scope="session")
def chat_page_url(stack: LocalStack) -> str:
    """The chat page (web/) served against the session's stack, as `make run` serves it."""
    url = stack.chat_page_url or stack.start_chat_page(free_port())
    if url is None:
        message = f"the chat page cannot be served: {stack.chat_page_missing}"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must run these tests")
        pytest.skip(message)
    return url


@pytest.fixture
def browser(request: pytest.FixtureRequest, chat_page_url: str) -> Iterator[Callable[[str], Browser]]:
    """`browser("alice")`: a new headless Chromium with an empty profile on the chat page's URL.
    When the test fails, each browser's screenshot, text and console go to .artifacts/browser/."""
    chromium, chromedriver = chromium_or_skip()
    opened: list[Browser] = []

    def open_browser(name: str) -> Browser:
        opened.append(Browser(chromium, chromedriver, chat_page_url, name))
        return opened[-1]

    yield open_browser
    report = getattr(request.node, "rep_call", None)
    if report is None or report.failed:
        keep_failure_artifacts(opened, request.node.name)
    for each in opened:
        each.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Each phase's report on the test item, so a fixture's teardown knows whether the test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def pytest_addoption(parser: pytest.Parser) -> None:
    """`--long`: bigger counts in tests/torture/ (TORTURE_LONG=1 does the same)."""
    parser.addoption("--long", action="store_true", default=False, help="run tests/torture with soak-sized counts")
