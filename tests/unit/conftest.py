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


class NoSocketsNoProcesses(Exception):
    """A unit test reached for the network or a process: it belongs in tests/integration."""


@pytest.fixture(autouse=True)
def no_sockets_no_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The unit layer opens no socket (not even loopback) and starts no process: each would make
    it slower and able to fail for reasons outside the code under test. Anything that tries
    fails the test with the reason. A socketpair (asyncio's loop wakes itself with one) is no
    network and stays allowed."""
    import asyncio
    import os
    import socket
    import subprocess

    def refuse(what: str):  # type: ignore[no-untyped-def]
        def refused(*args: object, **kwargs: object) -> None:
            raise NoSocketsNoProcesses(f"a unit test may not {what}; move it to tests/integration")
        return refused

    for name in ("connect", "connect_ex", "bind"):
        monkeypatch.setattr(socket.socket, name, refuse(f"{name} a socket"))
    monkeypatch.setattr(socket, "create_connection", refuse("open a connection"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse("resolve a host name"))
    monkeypatch.setattr(subprocess.Popen, "__init__", refuse("start a process"))
    monkeypatch.setattr(os, "fork", refuse("fork"))
    monkeypatch.setattr(os, "posix_spawn", refuse("spawn a process"), raising=False)
    monkeypatch.setattr(asyncio, "create_subprocess_exec", refuse("start a process"))
