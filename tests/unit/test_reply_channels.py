"""The SSE door fed from the conversation's channel, without sockets: a broadcast reply event as
the feed event it becomes (or nothing), and an SSE request of one process hearing a reply that
another process generates piece by piece from the channel, where the row has no more than its
first piece; without a channel it follows the row's checkpoints."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from chat.caller import Caller
from chat.reply_feed import FeedEvent, feed_event_of
from chat.service import ChatService
from chat.waiting.direct_stream import StreamEvent
from server.settings import Settings
from server.wiring import assemble_chat_service
from tests.support.fakes import (
    InMemoryDatabase,
    InMemoryMessageStore,
    InMemoryReplyChannels,
    RecordingBroadcaster,
    ScriptedModel,
    caller_stores,
)
from tests.support.in_process import fake_chat, unit_settings
from tests.support.polling import wait_until

ALICE = Caller("alice", "alice-token")
M = "7b0c1f4e-0000-4000-8000-000000000001"


@pytest.mark.parametrize(
    ("event", "payload", "expected"),
    [
        pytest.param("reply_delta", {"message_id": M, "reply_id": "r", "attempt": 2, "offset": 6, "delta": "hi"},
                     (M, FeedEvent("delta", 2, 6, "hi")), id="delta"),
        pytest.param("reply_done", {"message_id": M, "reply_id": "r", "attempt": 1}, (M, FeedEvent("done", 1)), id="done"),
        pytest.param("reply_failed", {"message_id": M, "reply_id": "r", "attempt": 1, "error": "The model broke off."},
                     (M, FeedEvent("failed", 1, error="The model broke off.")), id="failed"),
        pytest.param("reply_stopped", {"message_id": M, "reply_id": None, "attempt": 1}, (M, FeedEvent("stopped", 1)),
                     id="stopped-before-the-first-piece"),
        pytest.param("typing", {"message_id": M, "attempt": 1}, None, id="another-event"),
        pytest.param(None, {"message_id": M, "attempt": 1}, None, id="no-event"),
        pytest.param("reply_done", ["not", "an", "object"], None, id="payload-not-an-object"),
        pytest.param("reply_done", {"attempt": 1}, None, id="no-message-id"),
        pytest.param("reply_done", {"message_id": M, "attempt": "1"}, None, id="attempt-not-a-number"),
        pytest.param("reply_done", {"message_id": M, "attempt": True}, None, id="attempt-a-boolean"),
        pytest.param("reply_delta", {"message_id": M, "attempt": 1, "delta": "hi"}, None, id="delta-without-offset"),
        pytest.param("reply_delta", {"message_id": M, "attempt": 1, "offset": 0, "delta": 5}, None, id="delta-not-text"),
    ],
)
def test_a_broadcast_reply_event_becomes_the_feed_event_of_its_message(
    event: object, payload: object, expected: tuple[str, FeedEvent] | None
) -> None:
    assert feed_event_of(event, payload) == expected


class Steps:
    """A gate for ScriptedModel.gate_between_pieces that lets one piece through per `step`."""

    def __init__(self) -> None:
        self._permits = threading.Semaphore(0)

    def wait(self, timeout: float) -> bool:
        return self._permits.acquire(timeout=timeout)

    def step(self, pieces: int = 1) -> None:
        for _ in range(pieces):
            self._permits.release()


def process(database: InMemoryDatabase, broadcaster: RecordingBroadcaster, settings: Settings, model: ScriptedModel,
            *, channels: bool) -> ChatService:
    """One service process on the shared database; Realtime is the shared broadcaster."""
    store = InMemoryMessageStore(database)
    open_caller_store, _ = caller_stores(database)
    return assemble_chat_service(
        settings, store, store, open_caller_store, model, broadcaster,
        reply_channels=(lambda feed, _call_soon: InMemoryReplyChannels(broadcaster, feed)) if channels else None,
    )


@pytest.fixture
def two_processes(request: pytest.FixtureRequest) -> Iterator[tuple[ChatService, ChatService, InMemoryDatabase, Steps]]:
    """`here` serves the SSE request and has no room to generate; `there` generates, taking every
    message as the webhook would. `request.param`: the checkpoint interval, and whether `here`
    follows the channels (False: Realtime is out of reach, only the row tells)."""
    checkpoint_seconds, here_follows_channels = request.param
    settings = unit_settings(stream_checkpoint_seconds=checkpoint_seconds, stream_broadcast_interval_ms=10,
                             chat_reply_timeout_seconds=5)
    database, broadcaster, steps = InMemoryDatabase(), RecordingBroadcaster(), Steps()
    generating_model = ScriptedModel()
    generating_model.gate_between_pieces = steps  # type: ignore[assignment]
    here = process(database, broadcaster, settings, ScriptedModel(), channels=here_follows_channels)
    there = process(database, broadcaster, settings, generating_model, channels=True)
    here.engine.stop_accepting()
    database.on_user_message = there.accept_delivery
    yield here, there, database, steps
    steps.step(100)
    here.close()
    there.close()


def deltas(events: list[StreamEvent]) -> str:
    text = ""
    for event in events:
        if event.kind == "delta":
            assert event.data["offset"] == len(text)
            text += event.data["delta"]
    return text


@pytest.mark.parametrize("two_processes", [(60.0, True)], indirect=True)
def test_sse_hears_a_reply_generated_in_another_process_piece_by_piece_from_the_channel(
    two_processes: tuple[ChatService, ChatService, InMemoryDatabase, Steps],
) -> None:
    here, _, database, steps = two_processes
    conversation_id = database.add_conversation(ALICE.user_id)
    events = here.stream_message(ALICE, conversation_id, "one two three", None)

    first = next(events)
    message_id = next(iter(database.messages))
    received = [first]
    for _ in range(2):  # " one", " two": each while the row holds the first piece only
        steps.step()
        received.append(next(events))
        streaming = database.messages[message_id].streaming
        assert streaming is not None and streaming.content == "Echo:" and database.messages[message_id].status == "processing"
    steps.step()  # " three", the last
    received.extend(events)

    assert [event.kind for event in received] == ["delta"] * 4 + ["done"]
    assert deltas(received) == "Echo: one two three" == received[-1].data["response"]


@pytest.mark.parametrize("two_processes", [(0.01, False)], indirect=True)
def test_without_a_channel_sse_follows_the_rows_checkpoints(
    two_processes: tuple[ChatService, ChatService, InMemoryDatabase, Steps],
) -> None:
    here, _, database, steps = two_processes
    conversation_id = database.add_conversation(ALICE.user_id)
    events = here.stream_message(ALICE, conversation_id, "one two", None)

    received = [next(events)]
    steps.step()
    received.append(next(events))  # the checkpoint after " one", read from the row
    steps.step()
    received.extend(events)

    assert received[:2] == [StreamEvent("delta", {"offset": 0, "delta": "Echo:", "attempt": 1}),
                            StreamEvent("delta", {"offset": 5, "delta": " one", "attempt": 1})]
    assert deltas(received) == "Echo: one two" == received[-1].data["response"]


def test_a_reply_generated_here_is_spelled_once_though_the_channel_repeats_it() -> None:
    chat = fake_chat(unit_settings(stream_broadcast_interval_ms=10))
    steps = Steps()
    chat.model.gate_between_pieces = steps  # type: ignore[assignment]
    conversation_id = chat.database.add_conversation(ALICE.user_id)

    events = chat.service.stream_message(ALICE, conversation_id, "one two three", None)
    for broadcast in range(1, 4):  # each piece comes through the feed and again from the channel
        wait_until(lambda n=broadcast: [event for event, _ in chat.broadcaster.events()].count("reply_delta") == n)
        steps.step()
    received = list(events)

    assert [event.kind for event in received] == ["delta"] * 4 + ["done"]
    assert deltas(received) == "Echo: one two three" == received[-1].data["response"]
    chat.service.close()


def test_a_request_leaves_the_channel_once_its_reply_is_generated_here() -> None:
    chat = fake_chat(unit_settings(stream_broadcast_interval_ms=10))
    steps = Steps()
    chat.model.gate_between_pieces = steps  # type: ignore[assignment]
    conversation_id = chat.database.add_conversation(ALICE.user_id)
    assert chat.service.direct_stream is not None
    channels = chat.service.direct_stream.channels
    assert isinstance(channels, InMemoryReplyChannels)

    events = chat.service.stream_message(ALICE, conversation_id, "one two", None)
    assert channels.followers[f"chat:{conversation_id}"] == 1  # from before the insert
    received = [next(events)]
    assert channels.followers[f"chat:{conversation_id}"] == 0  # the claim is here: the feed brings the rest
    steps.step(2)
    received.extend(events)

    assert deltas(received) == "Echo: one two" == received[-1].data["response"]
    chat.service.close()
