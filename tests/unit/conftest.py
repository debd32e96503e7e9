"""The unit layer needs no server: a test here that asks for the database, the stack or the
service is refused at collection, so the layer stays fast and runs anywhere."""

from __future__ import annotations

import pytest

SERVER_FIXTURES = {"database_url", "db", "stack", "service", "live_service", "fake_model", "alice", "bob"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        wanted = SERVER_FIXTURES & set(getattr(item, "fixturenames", ()))
        if wanted and "unit" in item.path.parts:
            raise pytest.UsageError(f"{item.nodeid} is a unit test but asks for {sorted(wanted)}")
