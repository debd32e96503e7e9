"""Fixtures shared by the integration files (real Postgres and the local stand-ins)."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from tests.support.engine_loop import EngineLoop, engine_loop
from tests.support.turns import Chat


@pytest.fixture(scope="module")
def engine() -> Iterator[EngineLoop]:
    """One event loop for a module's async adapters, as the service has one per process."""
    with engine_loop() as running:
        yield running


@pytest.fixture
def chat(db: psycopg.Connection, database_url: str) -> Chat:
    """A user with a conversation, acting as the `authenticated` role with their JWT claims."""
    return Chat(db, database_url)


@pytest.fixture
def stranger(db: psycopg.Connection, database_url: str) -> Chat:
    """Another user, whose rows `chat` must never see or touch."""
    return Chat(db, database_url)
