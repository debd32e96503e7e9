"""The lean reading of OpenAI's streamed replies, on bytes alone (no server): events split on
blank lines wherever the reads cut them, CRLF or LF, `[DONE]` ends the stream, an error event
is the provider breaking off after the pieces before it; and the stream over those bytes."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from unittest.mock import Mock

import aiohttp
import pytest

from adapters.model import completion_reply
from adapters.model_errors import BROKE_OFF
from adapters.model_stream import OpenAIModelStream, ReadTicks, StreamChunks
from chat.errors import ModelUnavailable
from chat.ports import ModelReply


def chunk(content: str | None = None, usage: dict[str, int] | None = None) -> dict[str, Any]:
    choices = [] if content is None else [{"index": 0, "delta": {"content": content}, "finish_reason": None}]
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-test", "choices": choices, "usage": usage}


def sse(*chunks: dict[str, Any], done: bool = True, newline: bytes = b"\n") -> bytes:
    events = [b"data: " + json.dumps(item).encode() for item in chunks] + ([b"data: [DONE]"] if done else [])
    return b"".join(event + newline + newline for event in events)


USAGE = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
REPLY = sse(chunk(""), chunk("Hello"), chunk(" there"), chunk("!"), chunk(usage=USAGE))
ERROR_EVENT = b'data: {"error":{"message":"The server had an error","type":"server_error","param":null,"code":null}}\n\n'


def feed_in_pieces(data: bytes, cuts: list[int]) -> tuple[list[dict[str, Any]], StreamChunks]:
    parser = StreamChunks()
    chunks: list[dict[str, Any]] = []
    for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
        chunks += parser.feed(data[start:end])
    return chunks, parser


def contents(chunks: list[dict[str, Any]]) -> list[str | None]:
    return [item["choices"][0]["delta"]["content"] if item["choices"] else None for item in chunks]


def test_one_read_with_the_whole_stream() -> None:
    chunks, parser = feed_in_pieces(REPLY, [])

    assert contents(chunks) == ["", "Hello", " there", "!", None]
    assert chunks[-1]["usage"] == USAGE
    assert parser.done and parser.failure is None


@pytest.mark.parametrize("newline", [pytest.param(b"\n", id="LF"), pytest.param(b"\r\n", id="CRLF")])
def test_every_cut_between_reads_gives_the_same_chunks(newline: bytes) -> None:
    data = sse(chunk("Hello"), chunk(" there"), chunk(usage=USAGE), newline=newline)
    whole, _ = feed_in_pieces(data, [])

    for cut in range(1, len(data)):
        assert feed_in_pieces(data, [cut])[0] == whole, f"cut at byte {cut}"
    assert feed_in_pieces(data, list(range(1, len(data))))[0] == whole  # one byte per read


def test_a_crlf_split_between_reads_still_ends_the_event() -> None:
    data = sse(chunk("Hi"), done=False, newline=b"\r\n")
    parser = StreamChunks()

    assert parser.feed(data[:-3]) == []  # ...}\r | \n\r\n
    assert parser.feed(data[-3:-2]) == []
    assert contents(parser.feed(data[-2:])) == ["Hi"]


def test_done_ends_the_stream_and_what_follows_is_ignored() -> None:
    parser = StreamChunks()

    assert contents(parser.feed(sse(chunk("a")) + sse(chunk("after")))) == ["a"]
    assert parser.done
    assert parser.feed(sse(chunk("later"))) == []


def test_an_error_event_ends_the_stream_after_the_chunks_before_it() -> None:
    parser = StreamChunks()

    chunks = parser.feed(sse(chunk("Hello"), done=False) + ERROR_EVENT + sse(chunk("never")))

    assert contents(chunks) == ["Hello"]
    assert parser.done
    assert parser.failure is not None
    assert (parser.failure.status, parser.failure.provider_message) == (BROKE_OFF, "The server had an error")


def test_other_fields_and_comments_are_ignored() -> None:
    data = b": keep-alive\n\nevent: message\nid: 7\ndata:" + json.dumps(chunk("x")).encode() + b"\n\nretry: 100\n\n"

    assert contents(StreamChunks().feed(data)) == ["x"]


class InMemoryResponse:
    """What OpenAIModelStream uses of aiohttp's response, with the body fed from bytes."""

    def __init__(self, reads: list[bytes], end: bool = True) -> None:
        self.content = aiohttp.StreamReader(Mock(), 2**16, loop=asyncio.get_running_loop())
        for data in reads:
            self.content.feed_data(data)
        if end:
            self.content.feed_eof()
        self.how_let_go: str | None = None
        self.connection = None  # no socket to pause: the in-memory body

    def release(self) -> None:
        self.how_let_go = self.how_let_go or "released"

    def close(self) -> None:
        self.how_let_go = self.how_let_go or "closed"
        self.content.set_exception(aiohttp.ClientConnectionError("Connection closed"))


def stream_over(response: InMemoryResponse) -> OpenAIModelStream:
    return OpenAIModelStream(response, "asked-model")  # type: ignore[arg-type]


def test_the_stream_hands_out_the_pieces_and_keeps_the_last_usage() -> None:
    async def read() -> tuple[list[str], ModelReply, str | None]:
        response = InMemoryResponse([REPLY[:40], REPLY[40:]])
        stream = stream_over(response)
        await stream.read_first_piece()
        return [piece async for piece in stream], stream.reply, response.how_let_go

    pieces, reply, let_go = asyncio.run(read())

    assert pieces == ["Hello there!"]  # everything one read brought, joined (the body came in one buffer)
    assert reply == ModelReply(content="Hello there!", model="gpt-test", prompt_tokens=7, completion_tokens=3)
    assert let_go == "released"


def test_a_stream_with_no_text_is_an_empty_reply() -> None:
    async def read() -> None:
        await stream_over(InMemoryResponse([sse(chunk(""), chunk(usage=USAGE))])).read_first_piece()

    with pytest.raises(ModelUnavailable) as caught:
        asyncio.run(read())
    assert caught.value.user_message == "The AI model returned an empty reply. Please send your message again."


def test_an_error_event_reaches_the_reader_after_the_pieces_before_it() -> None:
    pieces: list[str] = []

    async def read() -> None:
        stream = stream_over(InMemoryResponse([sse(chunk("Hello"), chunk(" the"), done=False) + ERROR_EVENT]))
        await stream.read_first_piece()
        async for piece in stream:
            pieces.append(piece)

    with pytest.raises(ModelUnavailable) as caught:
        asyncio.run(read())
    assert caught.value.user_message == "The AI model's reply broke off. Please send your message again."
    assert pieces == ["Hello the"]


def test_close_while_reading_ends_the_iteration_quietly() -> None:
    async def read_then_close() -> tuple[list[str], str | None]:
        response = InMemoryResponse([sse(chunk("Hello"), done=False)], end=False)  # the rest never comes
        stream = stream_over(response)
        await stream.read_first_piece()
        pieces: list[str] = []

        async def read() -> None:
            async for piece in stream:
                pieces.append(piece)

        reader = asyncio.create_task(read())
        await asyncio.sleep(0.01)  # the reader waits on the connection
        stream.close()
        await asyncio.wait_for(reader, 1)
        return pieces, response.how_let_go

    pieces, let_go = asyncio.run(read_then_close())

    assert pieces == ["Hello"]
    assert let_go == "closed"


@pytest.mark.parametrize(
    "completion",
    [
        pytest.param({"choices": [{"message": {"role": "assistant", "content": ""}}]}, id="empty content"),
        pytest.param({"choices": [{"message": {"role": "assistant", "content": None}}]}, id="no content"),
        pytest.param({"choices": []}, id="no choices"),
        pytest.param({}, id="nothing"),
    ],
)
def test_a_whole_reply_with_no_text_is_an_empty_reply(completion: dict[str, Any]) -> None:
    with pytest.raises(ModelUnavailable) as caught:
        completion_reply(completion, "asked-model")
    assert caught.value.user_message == "The AI model returned an empty reply. Please send your message again."


def test_a_whole_reply_keeps_the_providers_model_and_usage() -> None:
    completion = {"model": "gpt-test-2026", "choices": [{"message": {"content": "Hi"}}], "usage": USAGE}

    assert completion_reply(completion, "asked-model") == ModelReply("Hi", "gpt-test-2026", 7, 3)


def test_a_body_already_received_is_taken_at_once_not_a_tick_later() -> None:
    async def read() -> list[str]:
        stream = OpenAIModelStream(InMemoryResponse([REPLY]), "asked-model", ReadTicks(60))  # type: ignore[arg-type]
        await stream.read_first_piece()
        return [piece async for piece in stream]

    assert asyncio.run(asyncio.wait_for(read(), 5)) == ["Hello there!"]


def test_pieces_that_trickle_in_are_taken_together_on_the_next_tick() -> None:
    async def read() -> list[str]:
        response = InMemoryResponse([sse(chunk("Hello"), done=False)], end=False)
        stream = OpenAIModelStream(response, "asked-model", ReadTicks(0.05))  # type: ignore[arg-type]
        await stream.read_first_piece()
        first = await anext(stream)
        waiting = asyncio.ensure_future(anext(stream))  # waits for the tick: nothing has come yet
        await asyncio.sleep(0)
        response.content.feed_data(sse(chunk(" there"), done=False))
        response.content.feed_data(sse(chunk("!"), done=False))
        return [first, await asyncio.wait_for(waiting, 5)]

    assert asyncio.run(read()) == ["Hello", " there!"]


def test_the_providers_end_wakes_a_stream_waiting_for_its_tick() -> None:
    async def read() -> list[str]:
        response = InMemoryResponse([sse(chunk("Hello"), done=False)], end=False)
        stream = OpenAIModelStream(response, "asked-model", ReadTicks(60))  # type: ignore[arg-type]
        await stream.read_first_piece()
        pieces = [await anext(stream)]
        rest = asyncio.ensure_future(collect(stream))
        await asyncio.sleep(0)
        response.content.feed_data(sse(chunk(" there"), chunk(usage=USAGE)))
        response.content.feed_eof()
        return pieces + await asyncio.wait_for(rest, 5)

    assert asyncio.run(read()) == ["Hello", " there"]


async def collect(stream: OpenAIModelStream) -> list[str]:
    return [piece async for piece in stream]
