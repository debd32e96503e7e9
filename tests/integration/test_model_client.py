"""The model client against the fake OpenAI server over real HTTP: one retry layer, Retry-After
honoured, never retrying what cannot succeed. Requests are counted at the fake."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from adapters.model import OpenAIChatModel
from chat.errors import ModelRejected, ModelUnavailable
from devstack.serving import RunningServer
from tests.support.fake_model import fake_model_server, fast_retrying_model, queue

PROMPT = [{"role": "user", "content": "ping"}]


@pytest.fixture(scope="module")
def fake() -> Iterator[RunningServer]:
    with fake_model_server() as server:
        yield server


@pytest.fixture
def model(fake: RunningServer) -> Iterator[OpenAIChatModel]:
    with fast_retrying_model(fake, timeout_seconds=0.5) as adapter:
        yield adapter



def requests_seen(fake: RunningServer) -> list[str]:
    return [item["outcome"] for item in httpx.get(f"{fake.url}/_fake/requests").json()["requests"]]


def test_reply_and_usage(model: OpenAIChatModel, fake: RunningServer) -> None:
    reply = model.complete(PROMPT, "fake-model")
    assert reply.content == "Echo: ping"
    assert reply.model == "fake-model"
    assert reply.prompt_tokens and reply.completion_tokens
    assert requests_seen(fake) == ["ok"]


def test_rate_limit_then_server_error_are_retried(model: OpenAIChatModel, fake: RunningServer) -> None:
    queue(fake, {"kind": "rate_limit", "retry_after": 0.05}, {"kind": "server_error"})
    assert model.complete(PROMPT, "fake-model").content == "Echo: ping"
    assert requests_seen(fake) == ["rate_limit", "server_error", "ok"]


def test_retry_after_is_honoured(model: OpenAIChatModel, fake: RunningServer) -> None:
    queue(fake, {"kind": "rate_limit", "retry_after": 0.15})
    started = time.monotonic()
    model.complete(PROMPT, "fake-model")
    assert time.monotonic() - started >= 0.15


def test_hang_times_out_and_is_retried_until_attempts_run_out(model: OpenAIChatModel, fake: RunningServer) -> None:
    queue(fake, *[{"kind": "hang", "seconds": 5}] * 3)
    with pytest.raises(ModelUnavailable) as raised:
        model.complete(PROMPT, "fake-model")
    assert "did not answer in time" in raised.value.user_message
    assert len(requests_seen(fake)) == 3


def test_server_errors_exhaust_retries_with_a_readable_error(model: OpenAIChatModel, fake: RunningServer) -> None:
    queue(fake, *[{"kind": "server_error"}] * 3)
    with pytest.raises(ModelUnavailable) as raised:
        model.complete(PROMPT, "fake-model")
    assert "server error" in raised.value.user_message
    assert requests_seen(fake) == ["server_error"] * 3


@pytest.mark.parametrize(
    ("fault", "readable"),
    [("insufficient_quota", "quota"), ("bad_request", "rejected this conversation (400)")],
)
def test_unretryable_errors_are_not_retried(model: OpenAIChatModel, fake: RunningServer, fault: str, readable: str) -> None:
    queue(fake, {"kind": fault})
    with pytest.raises(ModelRejected) as raised:
        model.complete(PROMPT, "fake-model")
    assert readable in raised.value.user_message
    assert requests_seen(fake) == [fault]


def test_connection_refused_is_unavailable(model: OpenAIChatModel) -> None:
    model.client = model.client.with_options(base_url="http://127.0.0.1:9/v1")
    with pytest.raises(ModelUnavailable):
        model.complete(PROMPT, "fake-model")
