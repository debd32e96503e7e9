"""The fake OpenAI server in-process, and the openai adapter pointed at it with fast retries: what
the model adapter's integration tests share."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx

from adapters.model import OpenAIChatModel, openai_client
from devstack.fake_openai import create_fake_openai
from devstack.serving import RunningServer, serve_in_thread


@contextlib.contextmanager
def fake_model_server() -> Iterator[RunningServer]:
    server = serve_in_thread(create_fake_openai())
    yield server
    server.stop()


@contextlib.contextmanager
def fast_retrying_model(fake: RunningServer, timeout_seconds: float) -> Iterator[OpenAIChatModel]:
    """Three attempts with millisecond backoff, so retry tests take no time; the fake's faults and
    request log are reset afterwards."""
    yield OpenAIChatModel(
        openai_client("test", f"{fake.url}/v1", timeout_seconds=timeout_seconds),
        max_attempts=3,
        retry_initial_seconds=0.01,
        retry_max_seconds=0.2,
    )
    httpx.post(f"{fake.url}/_fake/reset")


def queue(fake: RunningServer, *faults: dict) -> None:
    """The fake answers its next requests with these faults, in order."""
    httpx.post(f"{fake.url}/_fake/faults", json={"faults": list(faults)}).raise_for_status()
