"""Every reply this process is streaming, and the one periodic round trip that serves them all.

Once per STREAM_STOP_POLL_SECONDS, while anything streams, one `reply_tick` call stores the
checkpoints that are due (each reply's text at most once per STREAM_CHECKPOINT_SECONDS, its
lease extended with it, so a long reply never outlives its claim), learns which checkpoints were
refused (another attempt owns the message: stop generating) and which replies their owners asked
to stop. One request per process per interval however many replies stream, where a checkpoint
per reply per second and a stop poll of its own cost a round trip each.

A stop that arrives through this process's own REST door (`request_stop`) acts at once, without
waiting for the tick. Everything here runs on the reply engine's loop except `request_stop`,
which hands the stop to the loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from chat.errors import StoreUnavailable
from chat.logging import get_logger
from chat.ports import ClaimedMessage, ReplyCheckpoint, ReplyStore

logger = get_logger(__name__)


class LiveReply:
    """One streaming reply: its text so far, and whether it must end (stopped or superseded)."""

    def __init__(self, claim: ClaimedMessage, on_end: Callable[[], None], clock: Callable[[], float]) -> None:
        self.claim = claim
        self._on_end = on_end  # closes the model's stream, so the provider stops generating and billing
        self._clock = clock
        self._pieces: list[str] = []
        self.length = 0
        self.row_begun = False  # checkpoints need the reply row, made at the first piece
        self.checkpointed_length = 0
        self.checkpointed_at = clock()
        self.stop_requested = False
        self.superseded = False

    @property
    def text(self) -> str:
        if len(self._pieces) > 1:
            self._pieces = ["".join(self._pieces)]
        return self._pieces[0] if self._pieces else ""

    def append(self, piece: str) -> int:
        """Add a piece; returns its offset in the reply."""
        offset = self.length
        self._pieces.append(piece)
        self.length += len(piece)
        return offset

    def began(self) -> None:
        self.row_begun = True
        self.checkpointed_length = self.length
        self.checkpointed_at = self._clock()

    def checkpoint_due(self, now: float, every_seconds: float) -> bool:
        return self.row_begun and self.length > self.checkpointed_length and now - self.checkpointed_at >= every_seconds

    def stop(self) -> None:
        if not self.stop_requested:
            self.stop_requested = True
            self._end()

    def supersede(self) -> None:
        if not self.superseded:
            self.superseded = True
            self._end()

    @property
    def ending(self) -> bool:
        return self.stop_requested or self.superseded

    def _end(self) -> None:
        try:
            self._on_end()
        except Exception:
            logger.exception("closing a reply's model stream failed")


class LiveReplies:
    def __init__(
        self,
        store: ReplyStore,
        *,
        tick_seconds: float,
        checkpoint_seconds: float,
        lease_seconds: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.tick_seconds = tick_seconds
        self.checkpoint_seconds = checkpoint_seconds
        self.lease_seconds = lease_seconds
        self.clock = clock
        self._replies: dict[str, LiveReply] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ticker: asyncio.Task[None] | None = None
        self.ticks = 0

    def register(self, claim: ClaimedMessage, on_end: Callable[[], None]) -> LiveReply:
        """On the loop: the reply is live from now until `unregister`."""
        reply = LiveReply(claim, on_end, self.clock)
        self._replies[claim.message_id] = reply
        self._loop = asyncio.get_running_loop()
        if self._ticker is None or self._ticker.done():
            self._ticker = self._loop.create_task(self._tick_while_streaming(), name="reply-ticks")
        return reply

    def unregister(self, reply: LiveReply) -> None:
        if self._replies.get(reply.claim.message_id) is reply:
            del self._replies[reply.claim.message_id]

    def request_stop(self, message_id: str) -> bool:
        """From any thread (the REST door): True if this process streams the reply; it stops now."""
        reply = self._replies.get(message_id)
        loop = self._loop
        if reply is None or loop is None or loop.is_closed():
            return False
        loop.call_soon_threadsafe(reply.stop)
        return True

    def streaming(self) -> list[str]:
        return list(self._replies)

    async def tick(self) -> None:
        """One round trip: due checkpoints stored (leases extended), refusals and stops applied."""
        replies = list(self._replies.values())
        if not replies:
            return
        now = self.clock()
        due = [reply for reply in replies if reply.checkpoint_due(now, self.checkpoint_seconds)]
        checkpoints = [ReplyCheckpoint(r.claim.message_id, r.claim.claim_token, r.text) for r in due]
        self.ticks += 1
        answer = await self.store.reply_tick(checkpoints, [r.claim.message_id for r in replies], self.lease_seconds)
        for reply, checkpoint in zip(due, checkpoints, strict=False):
            reply.checkpointed_length = len(checkpoint.content)
            reply.checkpointed_at = now
        for message_id in answer.superseded:
            if (refused := self._replies.get(message_id)) is not None:
                refused.supersede()
        for message_id in answer.stop_requested:
            if (stopped := self._replies.get(message_id)) is not None:
                stopped.stop()

    async def _tick_while_streaming(self) -> None:
        """Every interval while anything streams; started again by the next `register`."""
        while True:
            await asyncio.sleep(self.tick_seconds)
            if not self._replies:
                return
            try:
                await self.tick()
            except StoreUnavailable as error:
                logger.warning("reply tick could not reach the store", reason=str(error))
            except Exception:
                logger.exception("reply tick failed; will tick again")
