"""Streamed replies to Realtime Broadcast, batched: every reply's new text is held and sent at
most once per interval (the first piece at once, so the first token is not delayed), and all
replies due at the same moment go out in one request. Supabase counts every delivered message
against the project's rate, so one message per token would use it up with a handful of streams.

Event contract (docs/streaming.md): on the private channel
`chat:<conversation_id>`, `reply_delta` {message_id, reply_id, attempt, offset, delta},
`reply_done`, `reply_failed` (+ error), `reply_stopped`, each with message_id, reply_id, attempt.
A reply's events go out in the order they were made: one sender task, final events after the
reply's pending text."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from chat.errors import BroadcastFailed
from chat.logging import get_logger
from chat.metrics import NO_METRICS, ServiceMetrics
from chat.ports import Broadcast, ReplyBroadcaster

logger = get_logger(__name__)


@dataclass(frozen=True)
class ReplyKey:
    """Which reply a piece of text belongs to, and to which attempt of its message."""

    conversation_id: str
    message_id: str
    reply_id: str | None  # None only for a reply stopped before its first piece
    attempt: int

    @property
    def topic(self) -> str:
        return f"chat:{self.conversation_id}"

    def payload(self, **extra: object) -> dict[str, object]:
        return {"message_id": self.message_id, "reply_id": self.reply_id, "attempt": self.attempt, **extra}


@dataclass
class _Pending:
    offset: int = 0
    text: str = ""
    last_sent: float | None = None  # None: nothing sent yet, the first text is due at once
    finals: list[Broadcast] = field(default_factory=list)
    released: bool = False  # the reply ended without a final event: forget it once its text is out


class ReplyBroadcasts:
    """One per process, on the reply engine's loop. `delta` and `finish` never wait on the
    network: one sender task does, and the text that arrives meanwhile joins the next request."""

    def __init__(
        self,
        broadcaster: ReplyBroadcaster,
        interval_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        metrics: ServiceMetrics = NO_METRICS,
    ) -> None:
        self.broadcaster = broadcaster
        self.metrics = metrics
        self.interval_seconds = interval_seconds
        self.clock = clock
        self._pending: dict[ReplyKey, _Pending] = {}
        self._wake: asyncio.Event | None = None
        self._sender: asyncio.Task[None] | None = None
        self._running = True
        self.sent_requests = 0
        self.sent_messages = 0

    def delta(self, key: ReplyKey, offset: int, text: str) -> None:
        """`text` was appended at character `offset` of the reply (on the loop)."""
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = _Pending(offset=offset)
        if not pending.text:
            # Wake the sender only when this reply gets text to send again: it knows when
            # that is due, and a wake per token would cost more than the tokens.
            pending.offset = offset
            pending.text = text
            self._wake_sender()
        else:
            pending.text += text

    def finish(self, key: ReplyKey, event: str, **extra: object) -> None:
        """The reply ended (`reply_done`, `reply_failed`, `reply_stopped`): its pending text goes
        first, then the event, both at once."""
        pending = self._pending.setdefault(key, _Pending())
        pending.finals.append(Broadcast(key.topic, event, key.payload(**extra)))
        pending.last_sent = None
        self._wake_sender()

    def release(self, key: ReplyKey) -> None:
        """The reply is over here, ended or not (a superseded claim, a store failure, a vanished
        message send no final event): its pending text still goes, then it is forgotten."""
        pending = self._pending.get(key)
        if pending is None:
            return
        if pending.text or pending.finals:
            pending.released = True
        else:
            del self._pending[key]

    async def close(self) -> None:
        """Send what is pending, then stop (the engine's stop hook)."""
        self._running = False
        if self._sender is not None:
            self._wake_sender()
            await asyncio.gather(self._sender, return_exceptions=True)

    def _wake_sender(self) -> None:
        if self._wake is None:
            self._wake = asyncio.Event()
        self._wake.set()
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._run(), name="reply-broadcasts")

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            batch = self._due_batch()
            if batch:
                await self._send(batch)
                continue
            if not self._running or not self._pending:
                return  # started again by the next delta
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._seconds_to_next_due())

    def _due_at(self, pending: _Pending) -> float:
        """A reply's first text goes at once; after that it is due on the first tick of a grid
        of intervals that is at least one interval after its last send. The grid is the same for
        every reply, so the replies of a process go out together: one request per interval."""
        if pending.last_sent is None:
            return float("-inf")
        return math.ceil((pending.last_sent + self.interval_seconds) / self.interval_seconds - 1e-9) * self.interval_seconds

    def _tick(self, now: float) -> float:
        return math.floor(now / self.interval_seconds + 1e-9) * self.interval_seconds

    def _due_batch(self) -> list[Broadcast]:
        now = self.clock()
        batch: list[Broadcast] = []
        for key in list(self._pending):
            pending = self._pending[key]
            due = now >= self._due_at(pending) or not self._running
            if not due or (not pending.text and not pending.finals):
                continue
            if pending.text:
                batch.append(Broadcast(key.topic, "reply_delta", key.payload(offset=pending.offset, delta=pending.text)))
                pending.offset += len(pending.text)
                pending.text = ""
                # On the grid, the tick it was due at (so its next one is the next tick, not the
                # one after, when the sender wakes a little late); a first send, the moment itself.
                pending.last_sent = now if pending.last_sent is None else self._tick(now)
            if pending.finals:
                batch.extend(pending.finals)
                del self._pending[key]
            elif pending.released:
                del self._pending[key]
        return batch

    def _seconds_to_next_due(self) -> float | None:
        waits = [
            self._due_at(pending) - self.clock()
            for pending in self._pending.values()
            if pending.text and pending.last_sent is not None
        ]
        return max(0.0, min(waits)) if waits else None

    async def _send(self, batch: list[Broadcast]) -> None:
        try:
            await self.broadcaster.send(batch)
        except BroadcastFailed as error:
            logger.warning("broadcast lost; clients re-read the row", reason=str(error), messages=len(batch))
            self.metrics.broadcasts(0, len(batch))
            return
        except Exception:
            logger.exception("broadcast failed unexpectedly", messages=len(batch))
            self.metrics.broadcasts(0, len(batch))
            return
        self.sent_requests += 1
        self.sent_messages += len(batch)
        self.metrics.broadcasts(len(batch), 0)
