"""The streaming pieces without servers: broadcasts batched per reply (first piece at once, then
at most one per interval, the end after the pending text, many replies in one request), the
reply tick (one round trip for every stream: checkpoints when due, refusals, stops; plus the
in-process fast path), and the SSE door's resume rule."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from chat.answering.broadcasts import ReplyBroadcasts, ReplyKey
from chat.answering.live_replies import LiveReplies
from chat.ports import ClaimedMessage, ReplyCheckpoint, TickAnswer
from chat.reply_feed import FeedEvent
from chat.waiting.direct_stream import _Text
from tests.support.fakes import RecordingBroadcaster
from tests.support.streaming import Gap, ResumedReply

KEY = ReplyKey("c1", "m1", "r1", 1)
OTHER = ReplyKey("c2", "m2", "r2", 1)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def sent(broadcaster: RecordingBroadcaster) -> list[tuple[str, str, dict]]:
    return [(m.topic, m.event, m.payload) for request in broadcaster.requests for m in request]


async def until(condition: Callable[[], object], seconds: float = 5.0) -> None:
    """Poll on the loop with a deadline (the sender is a task on the same loop)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.001)


def test_the_first_piece_goes_at_once_and_the_rest_at_most_once_per_interval() -> None:
    broadcaster, clock = RecordingBroadcaster(), Clock()
    broadcasts = ReplyBroadcasts(broadcaster, interval_seconds=0.15, clock=clock)

    async def scenario() -> None:
        broadcasts.delta(KEY, 0, "Echo: ")
        await until(lambda: broadcaster.requests)
        for offset, piece in ((6, "a "), (8, "b "), (10, "c")):
            broadcasts.delta(KEY, offset, piece)
        await asyncio.sleep(0.01)
        assert len(broadcaster.requests) == 1  # held: the interval has not passed
        clock.now = 0.15
        broadcasts._wake_sender()
        await until(lambda: len(broadcaster.requests) == 2)
        await broadcasts.close()

    asyncio.run(scenario())
    assert sent(broadcaster) == [
        ("chat:c1", "reply_delta", {"message_id": "m1", "reply_id": "r1", "attempt": 1, "offset": 0, "delta": "Echo: "}),
        ("chat:c1", "reply_delta", {"message_id": "m1", "reply_id": "r1", "attempt": 1, "offset": 6, "delta": "a b c"}),
    ]


def test_the_end_follows_the_pending_text_at_once_and_replies_share_a_request() -> None:
    broadcaster, clock = RecordingBroadcaster(), Clock()
    broadcasts = ReplyBroadcasts(broadcaster, interval_seconds=10, clock=clock)

    async def scenario() -> None:
        broadcasts.delta(KEY, 0, "Hi")  # both queued before the sender task first runs: one request
        broadcasts.delta(OTHER, 0, "Yo")
        await until(lambda: broadcaster.requests)
        broadcasts.delta(KEY, 2, " there")
        broadcasts.finish(KEY, "reply_done")
        await until(lambda: len(broadcaster.requests) == 2)
        await broadcasts.close()

    asyncio.run(scenario())
    assert [(m.event, m.payload.get("delta")) for m in broadcaster.requests[0]] == [("reply_delta", "Hi"), ("reply_delta", "Yo")]
    assert [(m.event, m.payload.get("delta"), m.payload.get("offset")) for m in broadcaster.requests[1]] == [
        ("reply_delta", " there", 2), ("reply_done", None, None)]


def test_a_lost_broadcast_is_logged_and_the_next_goes_out() -> None:
    broadcaster = RecordingBroadcaster()
    broadcaster.fail_next = True
    broadcasts = ReplyBroadcasts(broadcaster, interval_seconds=0.01)

    async def scenario() -> None:
        broadcasts.delta(KEY, 0, "lost")
        await until(lambda: not broadcaster.fail_next)
        broadcasts.finish(KEY, "reply_failed", error="It broke.")
        await until(lambda: broadcaster.requests)
        await broadcasts.close()

    asyncio.run(scenario())
    assert broadcasts.sent_requests == 1
    assert sent(broadcaster) == [("chat:c1", "reply_failed",
                                  {"message_id": "m1", "reply_id": "r1", "attempt": 1, "error": "It broke."})]


class TickStore:
    """reply_tick only: records each call and answers what the test arranged."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[ReplyCheckpoint], list[str], int]] = []
        self.stopped: set[str] = set()
        self.refused: set[str] = set()

    async def reply_tick(self, checkpoints: list[ReplyCheckpoint], streaming: list[str], lease_seconds: int) -> TickAnswer:
        self.calls.append((checkpoints, sorted(streaming), lease_seconds))
        return TickAnswer(superseded=[c.message_id for c in checkpoints if c.message_id in self.refused],
                          stop_requested=[m for m in streaming if m in self.stopped])


def claim(message_id: str) -> ClaimedMessage:
    return ClaimedMessage(message_id, "c1", "u1", 1, f"token-{message_id}", "", None, None, [])


def test_one_tick_serves_every_stream_checkpoints_when_due_and_a_stop_ends_its_model_stream() -> None:
    store, clock = TickStore(), Clock()
    live = LiveReplies(store, tick_seconds=60, checkpoint_seconds=1.0, lease_seconds=180, clock=clock)  # type: ignore[arg-type]
    ended: list[str] = []

    async def scenario() -> None:
        first = live.register(claim("m1"), lambda: ended.append("m1"))
        second = live.register(claim("m2"), lambda: ended.append("m2"))
        first.append("Hello")
        first.began()
        second.append("Hi")  # no row yet: never checkpointed
        await live.tick()
        assert store.calls[-1] == ([], ["m1", "m2"], 180)  # not due yet
        clock.now = 1.0
        first.append(" there")
        store.stopped.add("m2")
        await live.tick()
        assert store.calls[-1] == ([ReplyCheckpoint("m1", "token-m1", "Hello there")], ["m1", "m2"], 180)
        assert ended == ["m2"] and second.stop_requested and not first.ending
        clock.now = 2.0
        await live.tick()  # nothing new since the last checkpoint: none sent
        assert store.calls[-1][0] == []

    asyncio.run(scenario())
    assert len(store.calls) == 3  # one round trip per tick, however many streams


def test_a_refused_checkpoint_supersedes_its_reply() -> None:
    store, clock = TickStore(), Clock()
    live = LiveReplies(store, tick_seconds=60, checkpoint_seconds=0.0, lease_seconds=5, clock=clock)  # type: ignore[arg-type]
    ended: list[str] = []
    store.refused.add("m1")

    async def scenario() -> None:
        reply = live.register(claim("m1"), lambda: ended.append("m1"))
        reply.append("x")
        reply.began()
        reply.append("y")
        await live.tick()
        assert reply.superseded and ended == ["m1"]

    asyncio.run(scenario())


def test_the_in_process_fast_path_needs_no_round_trip() -> None:
    store = TickStore()
    live = LiveReplies(store, tick_seconds=60, checkpoint_seconds=1, lease_seconds=5)  # type: ignore[arg-type]
    ended: list[str] = []

    async def scenario() -> None:
        live.register(claim("m1"), lambda: ended.append("m1"))
        assert await asyncio.to_thread(live.request_stop, "m1") is True  # from a door's thread
        assert await asyncio.to_thread(live.request_stop, "m1") is True  # a second stop ends nothing twice
        assert live.request_stop("elsewhere") is False
        await until(lambda: ended)
        await asyncio.sleep(0.01)

    asyncio.run(scenario())
    assert ended == ["m1"] and store.calls == []


def test_the_sse_text_applies_the_resume_rule() -> None:
    text = _Text()
    assert text.local(FeedEvent("delta", 1, 0, "Echo: ")) is not None
    assert text.local(FeedEvent("delta", 1, 0, "Echo: ")) is None  # duplicate
    assert text.from_row("Echo: he", 1) is not None and text.text == "Echo: he"
    restarted = text.from_row("Ec", 2)  # a new attempt restarts the text
    assert restarted is not None and restarted.data == {"offset": 0, "delta": "Ec", "attempt": 2}
    assert text.local(FeedEvent("delta", 1, 8, "llo")) is None  # an older attempt is ignored
    assert text.local(FeedEvent("delta", 2, 9, "x")) is None  # a gap is not sent


def test_an_sse_delta_overlapping_what_was_sent_goes_out_as_its_new_end_only() -> None:
    text = _Text()
    assert text.from_row("Echo: he", 1) is not None
    overlapping = text.local(FeedEvent("delta", 1, 6, "hello"))  # the channel's piece from before the row read
    assert overlapping is not None and overlapping.data == {"offset": 8, "delta": "llo", "attempt": 1}
    assert text.text == "Echo: hello"


def test_the_clients_resume_rule_refuses_a_gap() -> None:
    reply = ResumedReply(text="Echo: ", attempt=1)
    reply.apply({"attempt": 1, "offset": 0, "delta": "Echo"})
    reply.apply({"attempt": 1, "offset": 4, "delta": ": hi"})
    assert reply.text == "Echo: hi"
    with pytest.raises(Gap):
        reply.apply({"attempt": 1, "offset": 20, "delta": "!"})


def test_a_reply_that_ends_without_a_final_event_sends_its_text_and_is_forgotten() -> None:
    broadcaster = RecordingBroadcaster()
    broadcasts = ReplyBroadcasts(broadcaster, interval_seconds=0.01)

    async def scenario() -> None:
        broadcasts.delta(KEY, 0, "Echo")
        await until(lambda: broadcaster.requests)
        broadcasts.delta(KEY, 4, ": hi")  # held for the next tick
        broadcasts.release(KEY)  # superseded: no reply_done will come
        await until(lambda: len(broadcaster.requests) == 2)
        broadcasts.release(OTHER)  # a reply never broadcast: nothing to do
        await broadcasts.close()

    asyncio.run(scenario())
    assert [m.payload["delta"] for request in broadcaster.requests for m in request] == ["Echo", ": hi"]
    assert broadcasts._pending == {}
