"""Every write of one claimed message's reply, in one place.

A claim (claim_message_for_reply) makes a worker the one that may answer a message, for a lease;
each write here names that claim (its claim_token), so a worker whose lease ran out and whose
message another attempt took can neither answer, fail nor end it: the database refuses, and the
write says so (None, `failed=False`, or ClaimSuperseded). The whole-reply path writes once
(`complete`); the streamed path writes the row at its first piece (`begin`) and at its end
(`finish`); either can `fail`, and shutdown can `release`. The streamed text in between is
checkpointed by the process's reply tick (live_replies.py), batched with every other stream's in
one round trip, not here."""

from __future__ import annotations

from dataclasses import dataclass

from chat.outcome import MessageOutcome
from chat.ports import ClaimedMessage, FailedMessage, ModelReply, ReplyStore, StoredReply, StreamingReply


@dataclass(frozen=True)
class ClaimedReply:
    store: ReplyStore
    claim: ClaimedMessage

    async def complete(self, reply: ModelReply) -> StoredReply | None:
        """Store a whole reply and settle the message done. None: the message is gone (its
        conversation deleted)."""
        return await self.store.complete_message_for_reply(self.claim, reply)

    async def begin(self, text: str) -> StreamingReply:
        """Create (or, on a new attempt, reset) the reply row with the stream's first text."""
        return await self.store.begin_reply(self.claim, text)

    async def finish(self, text: str, status: str, error: str | None, reply: ModelReply | None) -> MessageOutcome | None:
        """End a streamed reply (done, stopped or failed) with its final text, and the message with it."""
        return await self.store.finish_reply(self.claim, text, status, error, reply)

    async def fail(self, error: str) -> FailedMessage:
        """Settle the message failed with a reason its author can read."""
        return await self.store.fail_message(self.claim, error)

    async def release(self) -> bool:
        """Hand the claim back unanswered (shutdown), so another worker takes it now."""
        return await self.store.release_message(self.claim.message_id, self.claim.claim_token)
