"""One contract, two implementations of the pair chat.ports.ReplyBroadcaster (what the reply
engine sends) and chat.ports.ReplyChannels (what a process following a conversation hears): the
production adapters through the local Realtime (RealtimeBroadcaster over REST, RealtimeReplyChannels
over one websocket per process) and the fakes the unit tests use (RecordingBroadcaster relaying to
InMemoryReplyChannels). Every row runs against both, so what the domain hears in a unit test is
what it hears from Realtime.

"Never arrives" is asserted without waiting: a marker sent after the event, in the same request,
on a followed channel, arrives after it; once the marker is in, so is the event, or it never will be."""

from __future__ import annotations

import contextlib
import queue
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from adapters.broadcaster import RealtimeBroadcaster
from adapters.realtime_channels import RealtimeReplyChannels
from chat.ports import Broadcast, ReplyBroadcaster, ReplyChannels
from chat.reply_feed import FeedEvent, ReplyFeed
from devstack.stack import LocalStack
from tests.support.engine_loop import EngineLoop
from tests.support.fakes import InMemoryReplyChannels, RecordingBroadcaster
from tests.support.polling import wait_until

T = TypeVar("T")
WAIT_SECONDS = 5.0


@dataclass
class Process:
    """One service process's side: its feed, and its channels feeding it."""

    feed: ReplyFeed
    channels: ReplyChannels


@dataclass
class Subject:
    broadcaster: ReplyBroadcaster
    here: Process
    elsewhere: Process  # another process (or instance) on the same Realtime
    engine: EngineLoop

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.engine.run(coroutine)

    def send(self, *messages: Broadcast) -> None:
        self.run(self.broadcaster.send(list(messages)))

    def hears(self, process: Process, conversation_id: str) -> bool:
        """Whether an event sent now on `conversation_id` reaches `process`'s feed."""
        probe, marker_conversation, marker = (str(uuid.uuid4()) for _ in range(3))
        with process.feed.subscribe(probe) as probes, process.feed.subscribe(marker) as markers, \
                process.channels.follow(marker_conversation) as following:
            wait_until(lambda: following.joined)
            self.send(delta(conversation_id, probe, "probe"), delta(marker_conversation, marker, "marker"))
            markers.get(timeout=WAIT_SECONDS)
            try:
                probes.get_nowait()
            except queue.Empty:
                return False
            return True



@pytest.fixture(params=["realtime", "in_memory"])
def subject(request: pytest.FixtureRequest, engine: EngineLoop) -> Iterator[Subject]:
    if request.param == "in_memory":
        recording = RecordingBroadcaster()
        processes = [Process(feed, InMemoryReplyChannels(recording, feed)) for feed in (ReplyFeed(), ReplyFeed())]
        yield Subject(recording, processes[0], processes[1], engine)
        return
    stack: LocalStack = request.getfixturevalue("stack")
    key = stack.service_environment()["SUPABASE_SERVICE_ROLE_KEY"]
    opened: list[RealtimeReplyChannels] = []
    for feed in (ReplyFeed(), ReplyFeed()):
        opened.append(RealtimeReplyChannels(
            stack.api_url, key, engine.session(), feed, engine.call_soon, backoff_seconds=(0.05, 0.2)
        ))
    try:
        here, elsewhere = (Process(channels.feed, channels) for channels in opened)
        yield Subject(RealtimeBroadcaster(stack.api_url, key, engine.session()), here, elsewhere, engine)
    finally:
        for channels in opened:
            engine.run(channels.close())


def delta(conversation_id: str, message_id: str, text: str, offset: int = 0) -> Broadcast:
    payload = {"message_id": message_id, "reply_id": "r", "attempt": 1, "offset": offset, "delta": text}
    return Broadcast(f"chat:{conversation_id}", "reply_delta", payload)


def ended(conversation_id: str, message_id: str, event: str, **extra: Any) -> Broadcast:
    payload = {"message_id": message_id, "reply_id": "r", "attempt": 1, **extra}
    return Broadcast(f"chat:{conversation_id}", event, payload)


def test_a_followed_conversations_reply_events_reach_the_feed_in_order_under_their_message(subject: Subject) -> None:
    conversation = str(uuid.uuid4())
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    feed = subject.here.feed
    with feed.subscribe(first) as first_inbox, feed.subscribe(second) as second_inbox, \
            subject.here.channels.follow(conversation) as following:
        wait_until(lambda: following.joined)
        subject.send(
            delta(conversation, first, "Echo"),
            delta(conversation, second, "Other"),
            delta(conversation, first, ": hi", offset=4),
            ended(conversation, first, "reply_done"),
            ended(conversation, second, "reply_failed", error="The AI model's reply broke off."),
        )
        assert [first_inbox.get(timeout=WAIT_SECONDS) for _ in range(3)] == [
            FeedEvent("delta", 1, 0, "Echo"), FeedEvent("delta", 1, 4, ": hi"), FeedEvent("done", 1),
        ]
        assert [second_inbox.get(timeout=WAIT_SECONDS) for _ in range(2)] == [
            FeedEvent("delta", 1, 0, "Other"), FeedEvent("failed", 1, error="The AI model's reply broke off."),
        ]


def test_a_conversation_nobody_follows_is_not_heard(subject: Subject) -> None:
    assert not subject.hears(subject.here, str(uuid.uuid4()))


def test_a_conversation_is_heard_until_its_last_follower_goes(subject: Subject) -> None:
    conversation = str(uuid.uuid4())
    with contextlib.ExitStack() as first_follower:
        first = first_follower.enter_context(subject.here.channels.follow(conversation))
        with subject.here.channels.follow(conversation):
            wait_until(lambda: first.joined)
        assert subject.hears(subject.here, conversation)  # one follower left
        first_follower.close()
        assert not subject.hears(subject.here, conversation)


def test_every_process_following_a_conversation_hears_its_reply(subject: Subject) -> None:
    """A reply generated in one process reaches an SSE request waiting in another."""
    conversation = str(uuid.uuid4())
    with subject.here.channels.follow(conversation) as here, subject.elsewhere.channels.follow(conversation) as there:
        wait_until(lambda: here.joined and there.joined)
        assert subject.hears(subject.here, conversation)
        assert subject.hears(subject.elsewhere, conversation)
    with subject.here.channels.follow(conversation) as here:
        wait_until(lambda: here.joined)
        assert subject.hears(subject.here, conversation)
        assert not subject.hears(subject.elsewhere, conversation)  # it follows it no longer
