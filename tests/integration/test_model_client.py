"""The model adapter's whole replies against the fake OpenAI server over real HTTP, on one event
loop: one retry layer, Retry-After honoured, never retrying what cannot succeed, and the message
the user reads for each failure. Requests are counted at the fake."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from adapters.http_session import LoopSession
from adapters.model import OpenAIChatModel
from chat.errors import ModelError, ModelRejected, ModelUnavailable
from chat.ports import ModelReply
from devstack.serving import RunningServer
from tests.support.engine_loop import EngineLoop, engine_loop
from tests.support.fake_model import fake_model_server, fast_retrying_model, queue, retrying_model_at

PROMPT = [{"role": "user", "content": "ping"}]
BUSY = "The AI model is busy (rate limited). Please send your message again."
SERVER_ERROR = "The AI model had a server error. Please send your message again."
TIMED_OUT = "The AI model did not answer in time. Please send your message again."
QUOTA = "The AI provider's quota for this service is used up; the service's owner needs to add credit."


@pytest.fixture(scope="module")
def fake() -> Iterator[RunningServer]:
    with fake_model_server() as server:
        yield server


@pytest.fixture(scope="module")
def loop() -> Iterator[EngineLoop]:
    with engine_loop() as running:
        yield running


@pytest.fixture(scope="module")
def session(loop: EngineLoop) -> LoopSession:
    return loop.session()


@pytest.fixture
def model(fake: RunningServer, session: LoopSession) -> Iterator[OpenAIChatModel]:
    with fast_retrying_model(fake, timeout_seconds=0.5, session=session) as adapter:
        yield adapter


def requests_seen(fake: RunningServer) -> list[dict]:
    return list(httpx.get(f"{fake.url}/_fake/requests").json()["requests"])


def outcomes(fake: RunningServer) -> list[str]:
    return [item["outcome"] for item in requests_seen(fake)]


def test_reply_and_usage(model: OpenAIChatModel, fake: RunningServer, loop: EngineLoop) -> None:
    reply = loop.run(model.complete(PROMPT, "fake-model"))

    assert reply == ModelReply(content="Echo: ping", model="fake-model", prompt_tokens=2, completion_tokens=3)
    request = requests_seen(fake)[0]
    assert (request["outcome"], request["stream"], request["max_tokens"]) == ("ok", False, 1024)


def test_a_call_may_ask_for_its_own_max_tokens(model: OpenAIChatModel, fake: RunningServer, loop: EngineLoop) -> None:
    """A title asks for a few tokens (TITLE_MAX_TOKENS); a reply for REPLY_MAX_TOKENS."""
    loop.run(model.complete(PROMPT, "title-model", 24))
    request = requests_seen(fake)[0]
    assert (request["outcome"], request["model"], request["max_tokens"]) == ("ok", "title-model", 24)


def test_rate_limit_then_server_error_are_retried(model: OpenAIChatModel, fake: RunningServer, loop: EngineLoop) -> None:
    queue(fake, {"kind": "rate_limit", "retry_after": 0.05}, {"kind": "server_error"})

    assert loop.run(model.complete(PROMPT, "fake-model")).content == "Echo: ping"
    assert outcomes(fake) == ["rate_limit", "server_error", "ok"]


def test_retry_after_is_honoured(model: OpenAIChatModel, fake: RunningServer, loop: EngineLoop) -> None:
    queue(fake, {"kind": "rate_limit", "retry_after": 0.15})
    started = time.monotonic()

    loop.run(model.complete(PROMPT, "fake-model"))

    assert time.monotonic() - started >= 0.15


def test_retry_after_is_capped_at_the_longest_wait(model: OpenAIChatModel, fake: RunningServer, loop: EngineLoop) -> None:
    queue(fake, {"kind": "rate_limit", "retry_after": 30})  # retry_max_seconds is 0.2
    started = time.monotonic()

    loop.run(model.complete(PROMPT, "fake-model"))

    assert time.monotonic() - started < 2
    assert outcomes(fake) == ["rate_limit", "ok"]


@pytest.mark.parametrize(
    ("faults", "user_message"),
    [
        pytest.param([{"kind": "hang", "seconds": 5}] * 3, TIMED_OUT, id="no answer within the timeout"),
        pytest.param([{"kind": "server_error"}] * 3, SERVER_ERROR, id="500"),
        pytest.param([{"kind": "rate_limit", "retry_after": 0.01}] * 3, BUSY, id="429"),
    ],
)
def test_transient_failures_are_retried_until_attempts_run_out(
    model: OpenAIChatModel, fake: RunningServer, loop: EngineLoop, faults: list[dict], user_message: str
) -> None:
    queue(fake, *faults)

    with pytest.raises(ModelUnavailable) as raised:
        loop.run(model.complete(PROMPT, "fake-model"))

    assert raised.value.user_message == user_message
    assert outcomes(fake) == [fault["kind"] for fault in faults]


@pytest.mark.parametrize(
    ("fault", "user_message"),
    [
        pytest.param("insufficient_quota", QUOTA, id="429 insufficient_quota"),
        pytest.param("bad_request", "The AI model rejected this conversation (400): Injected bad request (fake OpenAI fault).",
                     id="400"),
    ],
)
def test_unretryable_errors_are_not_retried(
    model: OpenAIChatModel, fake: RunningServer, loop: EngineLoop, fault: str, user_message: str
) -> None:
    queue(fake, {"kind": fault})

    with pytest.raises(ModelRejected) as raised:
        loop.run(model.complete(PROMPT, "fake-model"))

    assert raised.value.user_message == user_message
    assert outcomes(fake) == [fault]


def test_a_refused_connection_is_unavailable(loop: EngineLoop, session: LoopSession) -> None:
    model = retrying_model_at("http://127.0.0.1:9/v1", 0.5, session)

    with pytest.raises(ModelError) as raised:
        loop.run(model.complete(PROMPT, "fake-model"))

    assert type(raised.value) is ModelUnavailable
    assert raised.value.user_message == TIMED_OUT
