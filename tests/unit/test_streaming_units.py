"""The streaming pieces without servers: broadcasts batched per reply (first piece at once, then
at most one per interval, the end after the pending text, many replies in one request), the
stop poller (one query for every stream, plus the in-process fast path), and the SSE door's
resume rule."""

from __future__ import annotations

import threading

import pytest

from chat.broadcasts import ReplyBroadcasts, ReplyKey
from chat.direct_stream import _Text
from chat.errors import BroadcastFailed
from chat.ports import Broadcast
from chat.reply_feed import FeedEvent
from chat.stops import StopSignals
from tests.support.polling import wait_until
from tests.support.streaming import Gap, ResumedReply

KEY = ReplyKey("c1", "m1", "r1", 1)
OTHER = ReplyKey("c2", "m2", "r2", 1)


class RecordingBroadcaster:
    def __init__(self) -> None:
        self.requests: list[list[Broadcast]] = []
        self.fail_next = False

    def send(self, messages: list[Broadcast]) -> None:
        if self.fail_next:
            self.fail_next = False
            raise BroadcastFailed("down")
        self.requests.append(messages)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def sent(broadcaster: RecordingBroadcaster) -> list[tuple[str, str, dict]]:
    return [(m.topic, m.event, m.payload) for request in broadcaster.requests for m in request]


def test_the_first_piece_goes_at_once_and_the_rest_at_most_once_per_interval() -> None:
    broadcaster, clock = RecordingBroadcaster(), Clock()
    broadcasts = ReplyBroadcasts(broadcaster, interval_seconds=0.15, clock=clock)
    broadcasts.start()
    try:
        broadcasts.delta(KEY, 0, "Echo: ")
        wait_until(lambda: broadcaster.requests)
        for offset, piece in ((6, "a "), (8, "b "), (10, "c")):
            broadcasts.delta(KEY, offset, piece)
        assert len(broadcaster.requests) == 1  # held: the interval has not passed
        clock.now = 0.15
        with broadcasts._wake:
            broadcasts._wake.notify()
        wait_until(lambda: len(broadcaster.requests) == 2)
    finally:
        broadcasts.shutdown()

    assert sent(broadcaster) == [
        ("chat:c1", "reply_delta", {"message_id": "m1", "reply_id": "r1", "attempt": 1, "offset": 0, "delta": "Echo: "}),
        ("chat:c1", "reply_delta", {"message_id": "m1", "reply_id": "r1", "attempt": 1, "offset": 6, "delta": "a b c"}),
    ]


def test_the_end_follows_the_pending_text_at_once_and_replies_share_a_request() -> None:
    broadcaster, clock = RecordingBroadcaster(), Clock()
    broadcasts = ReplyBroadcasts(broadcaster, interval_seconds=10, clock=clock)
    with broadcasts._wake:  # queue everything before the sender runs, to see one request
        broadcasts.delta(KEY, 0, "Hi")
        broadcasts.delta(OTHER, 0, "Yo")
    broadcasts.start()
    wait_until(lambda: broadcaster.requests)
    broadcasts.delta(KEY, 2, " there")
    broadcasts.finish(KEY, "reply_done")
    wait_until(lambda: len(broadcaster.requests) == 2)
    broadcasts.shutdown()

    assert [(m.event, m.payload.get("delta")) for m in broadcaster.requests[0]] == [("reply_delta", "Hi"), ("reply_delta", "Yo")]
    assert [(m.event, m.payload.get("delta"), m.payload.get("offset")) for m in broadcaster.requests[1]] == [
        ("reply_delta", " there", 2), ("reply_done", None, None)]


def test_a_lost_broadcast_is_logged_and_the_next_goes_out() -> None:
    broadcaster = RecordingBroadcaster()
    broadcaster.fail_next = True
    broadcasts = ReplyBroadcasts(broadcaster, interval_seconds=0.01)
    broadcasts.start()
    broadcasts.delta(KEY, 0, "lost")
    wait_until(lambda: broadcasts.sent_requests == 0 and not broadcaster.fail_next)
    broadcasts.finish(KEY, "reply_failed", error="It broke.")
    wait_until(lambda: broadcaster.requests)
    broadcasts.shutdown()

    assert sent(broadcaster) == [("chat:c1", "reply_failed",
                                  {"message_id": "m1", "reply_id": "r1", "attempt": 1, "error": "It broke."})]


class StopStore:
    def __init__(self) -> None:
        self.asked: list[list[str]] = []
        self.stopped: set[str] = set()
        self.lock = threading.Lock()

    def stop_requested_messages(self, message_ids: list[str]) -> list[str]:
        with self.lock:
            self.asked.append(sorted(message_ids))
            return [m for m in message_ids if m in self.stopped]


def test_one_query_asks_about_every_stream_and_a_stop_closes_its_model_stream() -> None:
    store = StopStore()
    signals = StopSignals(store, poll_seconds=0.01)  # type: ignore[arg-type]
    closed: list[str] = []
    first = signals.register("m1", lambda: closed.append("m1"))
    signals.register("m2", lambda: closed.append("m2"))

    wait_until(lambda: ["m1", "m2"] in store.asked)
    store.stopped.add("m1")
    wait_until(lambda: closed)

    assert closed == ["m1"] and first.requested
    assert all(len(asked) <= 2 for asked in store.asked)  # never one query per stream
    signals.unregister("m1", first)
    wait_until(lambda: store.asked[-1] == ["m2"])


def test_the_in_process_fast_path_needs_no_query() -> None:
    store = StopStore()
    signals = StopSignals(store, poll_seconds=60)  # type: ignore[arg-type]
    closed: list[str] = []
    signals.register("m1", lambda: closed.append("m1"))

    assert signals.request_stop("m1") is True
    assert signals.request_stop("m1") is True  # a second stop closes nothing twice
    assert signals.request_stop("elsewhere") is False
    assert closed == ["m1"]


def test_the_sse_text_applies_the_resume_rule() -> None:
    text = _Text()
    assert text.local(FeedEvent("delta", 1, 0, "Echo: ")) is not None
    assert text.local(FeedEvent("delta", 1, 0, "Echo: ")) is None  # duplicate
    assert text.from_row("Echo: he", 1) is not None and text.text == "Echo: he"
    restarted = text.from_row("Ec", 2)  # a new attempt restarts the text
    assert restarted is not None and restarted.data == {"offset": 0, "delta": "Ec", "attempt": 2}
    assert text.local(FeedEvent("delta", 1, 8, "llo")) is None  # an older attempt is ignored
    assert text.local(FeedEvent("delta", 2, 9, "x")) is None  # a gap is not sent


def test_the_clients_resume_rule_refuses_a_gap() -> None:
    reply = ResumedReply(text="Echo: ", attempt=1)
    reply.apply({"attempt": 1, "offset": 0, "delta": "Echo"})
    reply.apply({"attempt": 1, "offset": 4, "delta": ": hi"})
    assert reply.text == "Echo: hi"
    with pytest.raises(Gap):
        reply.apply({"attempt": 1, "offset": 20, "delta": "!"})
