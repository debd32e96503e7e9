"""The torture tests' own stack: a PostgreSQL of their own (they stop and start it, so it must not
be the session's), the gateway with the pg_net stand-in, the fake model, and services started as
the Procfile starts them. Every test starts from empty tables, no queued model faults, no
delivery faults and the webhook pointing nowhere; every test stops the services it started.

Bigger counts: `pytest tests/torture --long`, or `TORTURE_LONG=1 pytest tests/torture`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from devstack.postgres import LocalPostgres
from devstack.service_process import ServiceProcess
from devstack.serving import free_port
from devstack.stack import LocalStack
from tests.support.database import start_migrated_postgres
from tests.support.processes import service_env
from tests.support.stack import FakeModelControl, scratch_dir, start_test_stack
from tests.torture import ledger
from tests.torture.harness import TORTURE_SERVICE_SETTINGS, StartService, is_long_run, refresh_gateway, reset_stack


@pytest.fixture(scope="session")
def long_run(pytestconfig: pytest.Config) -> bool:
    return is_long_run(pytestconfig)


@pytest.fixture(scope="package")
def torture_state_dir() -> Iterator[Path]:
    with scratch_dir("ai-chat-torture-") as path:
        yield path


@pytest.fixture(scope="package")
def torture_postgres(torture_state_dir: Path) -> Iterator[LocalPostgres]:
    """A PostgreSQL of our own, which the tests may stop ("fast" or "immediate") and start again."""
    postgres = start_migrated_postgres(torture_state_dir)
    with psycopg.connect(postgres.superuser_url, autocommit=True) as conn:
        # The devstack turns durability off for speed. As on a real Supabase server, a commit the
        # client saw must survive a crash of the server ("immediate" stop): without this, a user
        # message whose insert returned could vanish, and the ledger would blame the service.
        conn.execute("alter database postgres set synchronous_commit = on")
    yield postgres
    postgres.stop()


@pytest.fixture(scope="package")
def torture_stack(torture_state_dir: Path, torture_postgres: LocalPostgres) -> Iterator[LocalStack]:
    running = start_test_stack(torture_state_dir, torture_postgres.superuser_url)
    yield running
    running.stop()


@pytest.fixture(scope="package")
def torture_url(torture_stack: LocalStack) -> str:
    return torture_stack.database_url


@pytest.fixture
def fake(torture_stack: LocalStack) -> FakeModelControl:
    assert torture_stack.fake_model is not None
    return FakeModelControl(torture_stack.fake_model.url)


@pytest.fixture(autouse=True)
def _torture_clean_slate(torture_stack: LocalStack, torture_postgres: LocalPostgres) -> Iterator[None]:
    """Empty tables, no faults, webhook unconfigured: before each test and after it. After a test
    that restarted PostgreSQL, a fresh gateway too."""
    reset_stack(torture_stack, torture_postgres)
    server = torture_postgres.process
    yield
    if torture_postgres.process is None or torture_postgres.process.poll() is not None:  # a test died while it was down
        torture_postgres.start()
    if torture_postgres.process is not server:
        refresh_gateway(torture_stack)
    reset_stack(torture_stack, torture_postgres)


@pytest.fixture
def start_service(torture_stack: LocalStack, torture_state_dir: Path) -> Iterator[StartService]:
    """Start services with the tests' settings plus overrides; all are stopped after the test."""
    started: list[ServiceProcess] = []

    def start(**overrides: str) -> ServiceProcess:
        port = free_port()
        env = service_env(torture_stack, **{**TORTURE_SERVICE_SETTINGS, **overrides})
        service = ServiceProcess(env, port=port, log_path=torture_state_dir / f"service-{port}.log")
        started.append(service)
        return service.start()

    yield start
    for service in started:
        service.stop(timeout=15)  # SIGTERM, then SIGKILL of the group if it does not exit


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Every scenario's ledger line, once more at the end of the run."""
    if ledger.LINES:
        terminalreporter.section("torture ledger")
        for line in ledger.LINES:
            terminalreporter.write_line(line)
