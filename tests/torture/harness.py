"""What the torture fixtures use: the services' settings, resetting the stack between tests, and
a fresh gateway after PostgreSQL restarted."""

from __future__ import annotations

import os
from collections.abc import Callable

import psycopg
import pytest

from devstack.gateway.app import create_gateway
from devstack.pgnet import DeliveryFaults
from devstack.postgres import LocalPostgres
from devstack.service_process import ServiceProcess
from devstack.serving import serve_in_thread
from devstack.stack import LocalStack
from tests.support.database import USER_TABLES
from tests.support.stack import UNCONFIGURED_WEBHOOK, FakeModelControl

# Logs as JSON lines, so the ledger can count the 500s a service answered from its access log.
TORTURE_SERVICE_SETTINGS = {"LOG_FORMAT": "json", "LOG_LEVEL": "INFO", "GRACEFUL_TIMEOUT": "5"}

StartService = Callable[..., ServiceProcess]


def is_long_run(config: pytest.Config) -> bool:
    """`--long` (added in tests/conftest.py) or TORTURE_LONG=1: bigger counts, for a soak."""
    try:
        flag = bool(config.getoption("--long"))
    except ValueError:  # the option is not registered (tests/torture run from another rootdir)
        flag = False
    return flag or os.environ.get("TORTURE_LONG", "") not in ("", "0")


def refresh_gateway(stack: LocalStack) -> None:
    """The gateway's connection pools keep the connections they had when PostgreSQL went away,
    and each one fails the first request that gets it (sign-up: 500, REST: 503). The restart test
    measures that; the tests after it start with a gateway (and pg_net worker) of fresh connections."""
    assert stack.gateway is not None and stack.keys is not None
    stack.gateway.stop()
    app = create_gateway(
        stack.database_url, stack.keys, token_lifetime_seconds=stack.config.token_lifetime_seconds, pgnet=stack.pgnet
    )
    stack.gateway = serve_in_thread(app, stack.config.host, stack.config.api_port)


def reset_stack(stack: LocalStack, postgres: LocalPostgres) -> None:
    assert stack.pgnet is not None and stack.fake_model is not None
    stack.pgnet.faults = DeliveryFaults()
    FakeModelControl(stack.fake_model.url).reset()
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        conn.execute(f"truncate {USER_TABLES} cascade")
    stack.configure_webhook(UNCONFIGURED_WEBHOOK)
