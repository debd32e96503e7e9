"""The streaming model adapter against the fake OpenAI server over real HTTP, on one event loop:
the pieces spell the reply, the usage of the last chunk is kept, retries happen only before the
first piece, an error after it reaches the caller, a stream may run past the timeout while its
tokens keep coming, and close() on the loop ends the provider's stream (counted at the fake)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from adapters.http_session import LoopSession
from adapters.model import OpenAIChatModel
from chat.errors import ModelRejected, ModelUnavailable
from chat.ports import ModelReply
from devstack.serving import RunningServer
from tests.support.engine_loop import EngineLoop, engine_loop
from tests.support.fake_model import fake_model_server, fast_retrying_model, pace, queue
from tests.support.polling import wait_until

TEXT = " ".join(f"word{index}" for index in range(30))
PROMPT = [{"role": "user", "content": TEXT}]


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
    with fast_retrying_model(fake, timeout_seconds=1, session=session) as adapter:
        yield adapter


def seen(fake: RunningServer) -> list[dict]:
    return list(httpx.get(f"{fake.url}/_fake/requests").json()["requests"])


async def read_all(model: OpenAIChatModel, prompt: list[dict[str, str]], into: list[str] | None = None) -> list[str]:
    pieces = [] if into is None else into
    async for piece in await model.stream(prompt, "fake-model"):
        pieces.append(piece)
    return pieces


def test_pieces_spell_the_reply_and_usage_comes_from_the_last_chunk(
    model: OpenAIChatModel, fake: RunningServer, loop: EngineLoop
) -> None:
    async def read() -> tuple[list[str], ModelReply]:
        stream = await model.stream(PROMPT, "fake-model")
        return [piece async for piece in stream], stream.reply

    pieces, reply = loop.run(read())

    assert "".join(pieces) == f"Echo: {TEXT}"
    assert 1 <= len(pieces) <= 31  # each step yields all that one read brought (the fake sends 31 chunks)
    assert reply == ModelReply(
        content=f"Echo: {TEXT}",
        model="fake-model",
        prompt_tokens=len(TEXT) // 4 + 1,
        completion_tokens=len(f"Echo: {TEXT}") // 4 + 1,
    )
    request = seen(fake)[0]
    assert (request["stream"], request["max_tokens"]) == (True, 1024)


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param({"kind": "server_error"}, id="500"),
        pytest.param({"kind": "rate_limit", "retry_after": 0.01}, id="429"),
        pytest.param({"kind": "stream_error", "after_tokens": 0}, id="error event before any text"),
        pytest.param({"kind": "hang", "seconds": 5}, id="no answer within the timeout"),
    ],
)
def test_failures_before_the_first_piece_are_retried(
    model: OpenAIChatModel, fake: RunningServer, loop: EngineLoop, fault: dict
) -> None:
    queue(fake, fault)

    assert "".join(loop.run(read_all(model, PROMPT))) == f"Echo: {TEXT}"
    assert [request["outcome"] for request in seen(fake)] == [fault["kind"], "ok"]


def test_an_error_after_the_first_piece_is_not_retried(model: OpenAIChatModel, fake: RunningServer, loop: EngineLoop) -> None:
    queue(fake, {"kind": "stream_error", "after_tokens": 4})
    pieces: list[str] = []

    with pytest.raises(ModelUnavailable) as caught:
        loop.run(read_all(model, PROMPT, into=pieces))

    assert caught.value.user_message == "The AI model's reply broke off. Please send your message again."
    assert "".join(pieces) == "Echo: word0 word1 word2 "
    assert [request["outcome"] for request in seen(fake)] == ["stream_error"]


@pytest.mark.parametrize(
    ("fault", "user_message"),
    [
        pytest.param({"kind": "bad_request"},
                     "The AI model rejected this conversation (400): Injected bad request (fake OpenAI fault).", id="400"),
        pytest.param({"kind": "insufficient_quota"},
                     "The AI provider's quota for this service is used up; the service's owner needs to add credit.",
                     id="429 insufficient_quota"),
    ],
)
def test_a_refusal_is_not_retried(
    model: OpenAIChatModel, fake: RunningServer, loop: EngineLoop, fault: dict, user_message: str
) -> None:
    queue(fake, fault)

    with pytest.raises(ModelRejected) as caught:
        loop.run(model.stream(PROMPT, "fake-model"))
    assert caught.value.user_message == user_message
    assert len(seen(fake)) == 1


def test_a_stream_may_outlast_the_timeout_while_its_tokens_keep_coming(
    fake: RunningServer, loop: EngineLoop, session: LoopSession
) -> None:
    pace(fake, 10)  # ten pieces over ~1 s, one every 0.1 s
    with fast_retrying_model(fake, timeout_seconds=0.4, session=session) as model:
        started = time.monotonic()
        pieces = loop.run(read_all(model, [{"role": "user", "content": "a b c d e f g h i"}]))

    assert "".join(pieces) == "Echo: a b c d e f g h i"
    assert time.monotonic() - started > 0.8


def test_a_stream_that_stops_sending_times_out_to_the_caller(
    fake: RunningServer, loop: EngineLoop, session: LoopSession
) -> None:
    pace(fake, 1)  # the first piece at once, the next a second later
    pieces: list[str] = []
    with fast_retrying_model(fake, timeout_seconds=0.3, session=session) as model:
        with pytest.raises(ModelUnavailable) as caught:
            loop.run(read_all(model, PROMPT, into=pieces))
        assert [request["outcome"] for request in seen(fake)] == ["ok"]

    assert caught.value.user_message == "The AI model did not answer in time. Please send your message again."
    assert pieces == ["Echo: "]


def test_close_ends_the_providers_stream_and_the_reading_quietly(
    model: OpenAIChatModel, fake: RunningServer, loop: EngineLoop
) -> None:
    pace(fake, 20)

    async def read_then_close() -> tuple[list[str], float]:
        stream = await model.stream(PROMPT, "fake-model")
        pieces: list[str] = []

        async def read() -> None:
            async for piece in stream:
                pieces.append(piece)

        reader = asyncio.create_task(read())
        while len(pieces) < 3:
            await asyncio.sleep(0.01)
        closed_at = time.time()
        stream.close()
        await asyncio.wait_for(reader, 5)  # ends with no exception
        assert stream.closed
        return pieces, closed_at

    pieces, closed_at = loop.run(read_then_close())

    request = wait_until(lambda: seen(fake)[0] if seen(fake)[0]["stream_end"] else None, deadline_seconds=5)
    assert request["stream_end"] == "client_closed"
    assert request["stream_ended_at"] - closed_at < 1.0
    assert request["tokens_sent"] < 31
    assert 3 <= len(pieces) < 31
