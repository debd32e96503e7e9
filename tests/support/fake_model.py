"""The fake OpenAI server in-process, and the model adapter pointed at it with fast retries: what
the model adapter's integration tests share."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx

from adapters.http_session import LoopSession
from adapters.model import OpenAIChatModel
from devstack.fake_openai import create_fake_openai
from devstack.serving import RunningServer, serve_in_thread


@contextlib.contextmanager
def fake_model_server() -> Iterator[RunningServer]:
    server = serve_in_thread(create_fake_openai())
    yield server
    server.stop()


def retrying_model_at(base_url: str, timeout_seconds: float, session: LoopSession) -> OpenAIChatModel:
    """Three attempts with millisecond backoff, so retry tests take no time."""
    return OpenAIChatModel(
        "test",
        base_url,
        timeout_seconds,
        session,
        max_attempts=3,
        retry_initial_seconds=0.01,
        retry_max_seconds=0.2,
    )


@contextlib.contextmanager
def fast_retrying_model(fake: RunningServer, timeout_seconds: float, session: LoopSession) -> Iterator[OpenAIChatModel]:
    """The adapter against the fake (see retrying_model_at); the fake's faults, pace and request
    log are reset afterwards."""
    yield retrying_model_at(f"{fake.url}/v1", timeout_seconds, session)
    httpx.post(f"{fake.url}/_fake/reset").raise_for_status()


def queue(fake: RunningServer, *faults: dict) -> None:
    """The fake answers its next requests with these faults, in order."""
    httpx.post(f"{fake.url}/_fake/faults", json={"faults": list(faults)}).raise_for_status()


def pace(fake: RunningServer, tokens_per_second: float) -> None:
    """Stream the fake's pieces at this rate (0: all at once); reset restores it."""
    httpx.post(f"{fake.url}/_fake/config", json={"tokens_per_second": tokens_per_second}).raise_for_status()
