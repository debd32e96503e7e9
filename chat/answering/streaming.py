"""One claimed message answered as a stream, on the reply engine's loop: the reply row from the
first piece on, its text checkpointed by the process's reply tick (chat/answering/live_replies.py), deltas
to Realtime (batched) and to this process's SSE requests (at once), and a stop honoured within
one tick by closing the model's stream.

Per piece of text nothing here waits: the piece is appended, handed to the broadcast batch and
to the in-process feed. The only round trips of a reply are its claim, `begin` at the first
piece and `finish` at the end (claimed_reply.py owns every write of the reply); checkpoints,
lease extensions and stop requests ride on the process's one tick.

After the first piece, a provider error is not retried: the partial text is kept on the reply
row, which is marked failed with a readable reason (so is the user message). Readers have already
seen that text; a fresh generation would differ from it and bill the prompt again, and the user
can send the message again. A worker that dies mid-stream is different: its claim's lease runs
out, the sweep claims the message again, and the new attempt resets the row (attempt + 1), which
clients tell by `attempt`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from chat.answering.broadcasts import ReplyBroadcasts, ReplyKey
from chat.answering.claimed_reply import ClaimedReply
from chat.answering.live_replies import LiveReplies, LiveReply
from chat.errors import ClaimSuperseded, ModelError
from chat.metrics import NO_METRICS, ServiceMetrics
from chat.outcome import MessageOutcome
from chat.ports import ModelReply, ModelStream, StreamingChatModel
from chat.reply_feed import FeedEvent, ReplyFeed


@dataclass
class ReplyStreaming:
    """What the pipeline needs to stream: the ports and the process-wide helpers."""

    model: StreamingChatModel
    broadcasts: ReplyBroadcasts
    live: LiveReplies
    feed: ReplyFeed
    metrics: ServiceMetrics = field(default=NO_METRICS)

    async def answer(
        self, writes: ClaimedReply, prompt: list[dict[str, str]], model_name: str, started: float | None = None
    ) -> MessageOutcome | None:
        """Stream the reply and store its end. Raises ModelError before the first piece (the
        pipeline fails the message as for a whole answer) and ClaimSuperseded when stale.
        `started` (perf_counter) is when answering the message began, for the first token's latency."""
        started = time.perf_counter() if started is None else started
        stream = await self.model.stream(prompt, model_name)
        live = self.live.register(writes.claim, stream.close)
        self.metrics.stream_opened()
        reply = _StreamedReply(self, writes, stream, live, started)
        try:
            return await reply.run()
        finally:
            self.metrics.stream_closed()
            self.live.unregister(live)
            stream.close()
            if reply.key is not None:
                self.broadcasts.release(reply.key)


class _StreamedReply:
    def __init__(
        self, streaming: ReplyStreaming, writes: ClaimedReply, stream: ModelStream, live: LiveReply, started: float
    ) -> None:
        self.started = started
        self.streaming = streaming
        self.writes = writes
        self.claim = writes.claim
        self.stream = stream
        self.live = live
        self.key: ReplyKey | None = None

    async def run(self) -> MessageOutcome | None:
        live = self.live
        try:
            async for piece in self.stream:
                if live.ending:
                    break
                offset = live.append(piece)
                if self.key is None:
                    self.streaming.metrics.first_token(time.perf_counter() - self.started)
                    row = await self.writes.begin(live.text)
                    self.key = ReplyKey(self.claim.conversation_id, self.claim.message_id, row.reply_id, row.attempt)
                    live.began()
                self._delta(offset, piece)
        except ModelError as error:
            if self.key is None:
                raise
            return await self._finish("failed", error.user_message, None)
        if live.superseded:
            raise ClaimSuperseded("the reply tick refused a checkpoint: another claim holds the message")
        if live.stop_requested or self.stream.closed:
            return await self._finish("stopped", None, None)
        return await self._finish("done", None, self.stream.reply)

    def _delta(self, offset: int, piece: str) -> None:
        assert self.key is not None
        self.streaming.broadcasts.delta(self.key, offset, piece)
        self.streaming.feed.publish(self.claim.message_id, FeedEvent("delta", self.key.attempt, offset, piece))

    async def _finish(self, status: str, error: str | None, reply: ModelReply | None) -> MessageOutcome | None:
        outcome = await self.writes.finish(self.live.text, status, error, reply)
        if reply is not None:
            self.streaming.metrics.tokens(reply.prompt_tokens or 0, reply.completion_tokens or 0)
        key = self.key or ReplyKey(self.claim.conversation_id, self.claim.message_id, None, self.claim.attempt)
        if outcome is not None:
            extra = {"error": error} if status == "failed" else {}
            self.streaming.broadcasts.finish(key, f"reply_{status}", **extra)
            self.streaming.feed.publish(self.claim.message_id, FeedEvent(status, key.attempt, error=error))
        return outcome
