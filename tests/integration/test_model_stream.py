"""The streaming model client against the fake OpenAI server over real HTTP: the pieces spell
the reply, the usage of the last chunk is kept, retries happen only before the first piece,
an error after it reaches the caller, and close() from another thread ends the provider's
stream (counted at the fake)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from adapters.model import OpenAIChatModel
from chat.errors import ModelRejected, ModelUnavailable
from devstack.serving import RunningServer
from tests.support.fake_model import fake_model_server, fast_retrying_model, queue
from tests.support.polling import wait_until

TEXT = " ".join(f"word{index}" for index in range(30))
PROMPT = [{"role": "user", "content": TEXT}]


@pytest.fixture(scope="module")
def fake() -> Iterator[RunningServer]:
    with fake_model_server() as server:
        yield server


@pytest.fixture
def model(fake: RunningServer) -> Iterator[OpenAIChatModel]:
    with fast_retrying_model(fake, timeout_seconds=2) as adapter:
        yield adapter



def seen(fake: RunningServer) -> list[dict]:
    return list(httpx.get(f"{fake.url}/_fake/requests").json()["requests"])


def test_pieces_spell_the_reply_and_usage_comes_from_the_last_chunk(model: OpenAIChatModel, fake: RunningServer) -> None:
    stream = model.stream(PROMPT, "fake-model")
    pieces = list(stream)

    assert "".join(pieces) == f"Echo: {TEXT}"
    assert len(pieces) == 31
    assert stream.reply.content == f"Echo: {TEXT}"
    assert stream.reply.model == "fake-model"
    assert stream.reply.completion_tokens == len(f"Echo: {TEXT}") // 4 + 1
    assert stream.reply.prompt_tokens == len(TEXT) // 4 + 1
    request = seen(fake)[0]
    assert request["stream"] is True


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param({"kind": "server_error"}, id="500"),
        pytest.param({"kind": "rate_limit", "retry_after": 0.01}, id="429"),
        pytest.param({"kind": "stream_error", "after_tokens": 0}, id="error event before any text"),
    ],
)
def test_failures_before_the_first_piece_are_retried(model: OpenAIChatModel, fake: RunningServer, fault: dict) -> None:
    queue(fake, fault)

    assert "".join(model.stream(PROMPT, "fake-model")) == f"Echo: {TEXT}"
    assert [request["outcome"] for request in seen(fake)] == [fault["kind"], "ok"]


def test_an_error_after_the_first_piece_is_not_retried(model: OpenAIChatModel, fake: RunningServer) -> None:
    queue(fake, {"kind": "stream_error", "after_tokens": 4})
    stream = model.stream(PROMPT, "fake-model")
    pieces: list[str] = []

    with pytest.raises(ModelUnavailable) as caught:
        for piece in stream:
            pieces.append(piece)

    assert caught.value.user_message == "The AI model's reply broke off. Please send your message again."
    assert "".join(pieces) == "Echo: word0 word1 word2 "
    assert [request["outcome"] for request in seen(fake)] == ["stream_error"]


def test_a_refusal_is_not_retried(model: OpenAIChatModel, fake: RunningServer) -> None:
    queue(fake, {"kind": "bad_request"})

    with pytest.raises(ModelRejected):
        model.stream(PROMPT, "fake-model")
    assert len(seen(fake)) == 1


def test_close_from_another_thread_ends_the_providers_stream(model: OpenAIChatModel, fake: RunningServer) -> None:
    httpx.post(f"{fake.url}/_fake/config", json={"tokens_per_second": 20}).raise_for_status()
    stream = model.stream(PROMPT, "fake-model")
    pieces: list[str] = []
    reader = threading.Thread(target=lambda: pieces.extend(stream))
    reader.start()
    wait_until(lambda: len(pieces) >= 3, deadline_seconds=5)

    closed_at = time.time()
    stream.close()
    reader.join(timeout=5)

    assert not reader.is_alive()  # the reader ended quietly, no exception
    request = wait_until(lambda: seen(fake)[0] if seen(fake)[0]["stream_end"] else None, deadline_seconds=5)
    assert request["stream_end"] == "client_closed"
    assert request["stream_ended_at"] - closed_at < 1.0
    assert request["tokens_sent"] < 31
