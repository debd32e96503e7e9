"""One contract, two implementations of chat.ports.StreamingChatModel: the production adapter
(OpenAIChatModel, aiohttp against the fake OpenAI server over real HTTP) and the scripted model
the unit tests use (ScriptedModel). Every row runs against both on one event loop, as the reply
engine awaits them, so the fake cannot drift from what the domain gets from the adapter: where a
failure surfaces (opening the stream, or while reading it), what `reply` holds afterwards, and
how a closed stream ends.

A failure is arranged at the source of each: a fault queued at the fake server, or, for the
scripted model, the error the adapter makes of that provider answer (adapters/model_errors.py)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from adapters.http_session import LoopSession
from adapters.model_errors import BROKE_OFF, ProviderFailure, model_error
from chat.errors import ModelError, ModelRejected, ModelUnavailable
from chat.ports import ModelReply, ModelStream, StreamingChatModel
from devstack.serving import RunningServer
from tests.support.engine_loop import EngineLoop
from tests.support.fake_model import fake_model_server, fast_retrying_model, pace, queue
from tests.support.fakes import BrokeOff, ScriptedModel

T = TypeVar("T")
MODEL = "fake-model"
WORDS = "one two three four five six seven eight"
PROMPT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": WORDS}]
ECHO = f"Echo: {WORDS}"  # what both answer: the fake server's reply, and ScriptedModel's default
ATTEMPTS = 3  # fast_retrying_model's

REFUSED = "The AI model rejected this conversation (400): Injected bad request (fake OpenAI fault)."
SERVER_ERROR = "The AI model had a server error. Please send your message again."
BROKEN_OFF = "The AI model's reply broke off. Please send your message again."


@dataclass
class Subject:
    model: StreamingChatModel
    engine: EngineLoop
    refuse_next: Callable[[], None]  # the provider refuses the next request (400)
    fail_next: Callable[[], None]  # server errors until the retries are spent
    break_off_next: Callable[[], None]  # the next stream breaks off after its first pieces
    pace: Callable[[], None]  # pieces arrive one by one, not all at once

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.engine.run(coroutine)



@pytest.fixture(scope="module")
def fake_server() -> Iterator[RunningServer]:
    with fake_model_server() as server:
        yield server


@pytest.fixture(scope="module")
def session(engine: EngineLoop) -> LoopSession:
    return engine.session()


@pytest.fixture(params=["openai", "scripted"])
def subject(request: pytest.FixtureRequest, engine: EngineLoop) -> Iterator[Subject]:
    if request.param == "scripted":
        scripted = ScriptedModel()
        yield Subject(
            scripted,
            engine,
            refuse_next=lambda: scripted.script.append(
                model_error(ProviderFailure(400, "Injected bad request (fake OpenAI fault)."))
            ),
            fail_next=lambda: scripted.script.append(model_error(ProviderFailure(500, "server error"))),
            break_off_next=lambda: scripted.script.append(
                BrokeOff(model_error(ProviderFailure(BROKE_OFF, "server error")), ECHO)
            ),
            pace=lambda: None,  # ScriptedModel hands out a piece per step already
        )
        return
    server: RunningServer = request.getfixturevalue("fake_server")
    with fast_retrying_model(server, timeout_seconds=5, session=request.getfixturevalue("session")) as adapter:
        yield Subject(
            adapter,
            engine,
            refuse_next=lambda: queue(server, {"kind": "bad_request"}),
            fail_next=lambda: queue(server, *[{"kind": "server_error"}] * ATTEMPTS),
            break_off_next=lambda: queue(server, {"kind": "stream_error", "after_tokens": 2}),
            pace=lambda: pace(server, 50),
        )


async def read(stream: ModelStream, into: list[str]) -> None:
    async for piece in stream:
        into.append(piece)


def streamed(subject: Subject) -> tuple[list[str], ModelStream]:
    async def open_and_read() -> tuple[list[str], ModelStream]:
        stream = await subject.model.stream(PROMPT, MODEL)
        pieces: list[str] = []
        await read(stream, pieces)
        return pieces, stream

    return subject.run(open_and_read())


def has_counts(reply: ModelReply) -> bool:
    return all(isinstance(count, int) and count > 0 for count in (reply.prompt_tokens, reply.completion_tokens))


# --- replies -------------------------------------------------------------------------------------


def test_a_whole_reply_has_its_text_the_model_asked_for_and_token_counts(subject: Subject) -> None:
    reply = subject.run(subject.model.complete(PROMPT, MODEL))
    assert (reply.content, reply.model) == (ECHO, MODEL)
    assert has_counts(reply), reply


def test_a_streamed_reply_comes_in_pieces_that_spell_it_and_then_has_its_counts(subject: Subject) -> None:
    subject.pace()
    pieces, stream = streamed(subject)
    assert "".join(pieces) == ECHO
    assert len(pieces) > 1 and all(pieces)
    reply = stream.reply
    assert (reply.content, reply.model) == (ECHO, MODEL)
    assert has_counts(reply), reply
    assert not stream.closed  # read to its end, not closed


def test_a_streamed_reply_and_a_whole_one_are_the_same_text(subject: Subject) -> None:
    whole = subject.run(subject.model.complete(PROMPT, MODEL))
    pieces, stream = streamed(subject)
    assert "".join(pieces) == stream.reply.content == whole.content


# --- failures ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arrange", "error", "user_message"),
    [
        pytest.param("refuse_next", ModelRejected, REFUSED, id="refused: rejected, not retried"),
        pytest.param("fail_next", ModelUnavailable, SERVER_ERROR, id="server errors outlast the retries: unavailable"),
    ],
)
@pytest.mark.parametrize("call", ["complete", "stream"])
def test_a_failure_before_any_text_is_raised_by_the_call_itself(
    subject: Subject, arrange: str, error: type[ModelError], user_message: str, call: str
) -> None:
    """A stream that cannot start raises at `stream()`, before the caller holds a stream: the
    pipeline fails the message as for a whole answer, with nothing to take back."""
    getattr(subject, arrange)()
    opening = subject.model.complete(PROMPT, MODEL) if call == "complete" else subject.model.stream(PROMPT, MODEL)
    with pytest.raises(ModelError) as raised:
        subject.run(opening)
    assert type(raised.value) is error
    assert raised.value.user_message == user_message
    # the next request is answered: nothing of the failure lingers
    assert subject.run(subject.model.complete(PROMPT, MODEL)).content == ECHO


def test_a_stream_that_breaks_off_raises_while_read_after_its_first_pieces(subject: Subject) -> None:
    subject.break_off_next()
    pieces: list[str] = []

    async def open_and_read() -> ModelStream:
        stream = await subject.model.stream(PROMPT, MODEL)  # it started: no error yet
        with pytest.raises(ModelUnavailable) as raised:
            await read(stream, pieces)
        assert raised.value.user_message == BROKEN_OFF
        return stream

    stream = subject.run(open_and_read())
    text = "".join(pieces)
    assert pieces and ECHO.startswith(text) and text != ECHO
    assert stream.reply.content == text  # what was handed out, and no more


# --- closing -------------------------------------------------------------------------------------


def test_a_stream_closed_after_its_first_piece_ends_quietly(subject: Subject) -> None:
    subject.pace()

    async def read_one_then_close() -> tuple[list[str], ModelStream]:
        stream = await subject.model.stream(PROMPT, MODEL)
        pieces: list[str] = []
        async for piece in stream:  # no error: the iteration simply ends
            pieces.append(piece)
            stream.close()
        return pieces, stream

    pieces, stream = subject.run(read_one_then_close())
    assert len(pieces) == 1 and ECHO.startswith(pieces[0]) and pieces[0] != ECHO
    assert stream.closed


def test_closing_a_stream_twice_or_after_its_end_is_harmless(subject: Subject) -> None:
    pieces, stream = streamed(subject)
    stream.close()
    stream.close()
    assert stream.closed and "".join(pieces) == ECHO
