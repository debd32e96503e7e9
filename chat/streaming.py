"""One claimed message answered as a stream: the reply row from the first piece on, its text
checkpointed every STREAM_CHECKPOINT_SECONDS, deltas to Realtime (batched) and to this process's
SSE requests (at once), and a stop honoured within one stop poll by closing the model's stream.

After the first piece, a provider error is not retried: the partial text is kept on the reply
row, which is marked failed with a readable reason (so is the user message). Readers have already
seen that text; a fresh generation would differ from it and bill the prompt again, and the user
can send the message again. A worker that dies mid-stream is different: its claim's lease runs
out, the sweep claims the message again, and the new attempt resets the row (attempt + 1), which
clients tell by `attempt`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from chat.broadcasts import ReplyBroadcasts, ReplyKey
from chat.errors import ClaimSuperseded, ModelError
from chat.outcome import MessageOutcome
from chat.ports import ClaimedMessage, ModelReply, ModelStream, StreamingChatModel, StreamingMessageStore
from chat.reply_feed import FeedEvent, ReplyFeed
from chat.stops import StopSignals


@dataclass
class ReplyStreaming:
    """What the pipeline needs to stream: the ports and the process-wide helpers."""

    store: StreamingMessageStore
    model: StreamingChatModel
    broadcasts: ReplyBroadcasts
    stops: StopSignals
    feed: ReplyFeed
    checkpoint_seconds: float

    def answer(self, claim: ClaimedMessage, prompt: list[dict[str, str]], model_name: str) -> MessageOutcome | None:
        """Stream the reply and store its end. Raises ModelError before the first piece (the
        pipeline fails the message as for a whole answer) and ClaimSuperseded when stale."""
        stream = self.model.stream(prompt, model_name)
        signal = self.stops.register(claim.message_id, stream.close)
        try:
            return _StreamedReply(self, claim, stream).run(lambda: signal.requested)
        finally:
            self.stops.unregister(claim.message_id, signal)
            stream.close()


class _StreamedReply:
    def __init__(self, streaming: ReplyStreaming, claim: ClaimedMessage, stream: ModelStream) -> None:
        self.streaming = streaming
        self.claim = claim
        self.stream = stream
        self.text = ""
        self.key: ReplyKey | None = None

    def run(self, stop_requested: Callable[[], bool]) -> MessageOutcome | None:
        store = self.streaming.store
        last_checkpoint = time.monotonic()
        try:
            for piece in self.stream:
                if stop_requested():
                    break
                offset = len(self.text)
                self.text += piece
                if self.key is None:
                    row = store.begin_reply(self.claim, self.text)
                    self.key = ReplyKey(self.claim.conversation_id, self.claim.message_id, row.reply_id, row.attempt)
                    last_checkpoint = time.monotonic()
                elif time.monotonic() - last_checkpoint >= self.streaming.checkpoint_seconds:
                    if not store.checkpoint_reply(self.claim, self.text):
                        raise ClaimSuperseded("checkpoint refused: another claim holds the message")
                    last_checkpoint = time.monotonic()
                self._delta(offset, piece)
        except ModelError as error:
            if self.key is None:
                raise
            return self._finish("failed", error.user_message, None)
        if stop_requested() or self.stream.closed:
            return self._finish("stopped", None, None)
        return self._finish("done", None, self.stream.reply)

    def _delta(self, offset: int, piece: str) -> None:
        assert self.key is not None
        self.streaming.broadcasts.delta(self.key, offset, piece)
        self.streaming.feed.publish(self.claim.message_id, FeedEvent("delta", self.key.attempt, offset, piece))

    def _finish(self, status: str, error: str | None, reply: ModelReply | None) -> MessageOutcome | None:
        outcome = self.streaming.store.finish_reply(self.claim, self.text, status, error, reply)
        key = self.key or ReplyKey(self.claim.conversation_id, self.claim.message_id, None, self.claim.attempt)
        if outcome is not None:
            extra = {"error": error} if status == "failed" else {}
            self.streaming.broadcasts.finish(key, f"reply_{status}", **extra)
            self.streaming.feed.publish(self.claim.message_id, FeedEvent(status, key.attempt, error=error))
        return outcome
