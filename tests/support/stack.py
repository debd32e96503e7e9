"""The local stack the tests run against (the gateway, the pg_net stand-in, the fake model) and
the fake model's control API, plus the temporary folder both stacks keep their state in."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from devstack.serving import free_port

if TYPE_CHECKING:
    from devstack.stack import LocalStack

UNCONFIGURED_WEBHOOK = "http://127.0.0.1:9/unconfigured"


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A temporary folder for a stack's data and the services' logs. KEEP_TEST_STATE=1 keeps it,
    to read those logs after a failure."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    yield path
    if not os.environ.get("KEEP_TEST_STATE"):
        shutil.rmtree(path, ignore_errors=True)


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
