"""The synchronous path for callers without Realtime: insert the message as the caller, then wait
on the same webhook pipeline that answers every other message. Nothing here generates a reply;
it only waits for the one the pipeline writes, so both paths keep the same guarantees."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from chat.errors import (
    ClientMessageConflict,
    ConversationNotFound,
    DuplicateClientMessage,
    ReplyFailed,
    ReplyTimeout,
)
from chat.outcome import MessageOutcome
from chat.ports import CallerStore
from chat.waiting.waiter import ReplyWaiter


@dataclass(frozen=True)
class ChatReply:
    conversation_id: str
    message_id: str
    reply_id: str | None  # None only for a reply stopped before its first token
    response: str
    status: str = "done"  # or "stopped": the partial reply kept

    def as_json(self) -> dict[str, object]:
        """The JSON answer of POST /api/chat, and the SSE `done` event's data."""
        return {
            "response": self.response,
            "conversation_id": self.conversation_id,
            "message_id": self.message_id,
            "reply_id": self.reply_id,
            "status": self.status,
        }


class DirectChat:
    def __init__(self, waiter: ReplyWaiter, *, reply_timeout_seconds: float) -> None:
        self.waiter = waiter
        self.reply_timeout_seconds = reply_timeout_seconds

    def send(
        self, store: CallerStore, conversation_id: str, content: str, client_message_id: str | None
    ) -> ChatReply:
        """Quotas are the database's: the insert is refused (RateLimited) like any other insert."""
        message_id = str(uuid.uuid4())
        with self.waiter.expect(message_id) as expectation:
            try:
                store.insert_message(message_id, conversation_id, content, client_message_id)
            except DuplicateClientMessage:
                assert client_message_id is not None
                return self.retried(store, conversation_id, client_message_id)
            expectation.wait(self.reply_timeout_seconds)
            outcome = expectation.outcome or store.message_outcome(message_id)
        return self.reply_from(message_id, outcome)

    def retried(self, store: CallerStore, conversation_id: str, client_message_id: str) -> ChatReply:
        """A retry of a request that already inserted its message: answer with that message's reply."""
        existing = store.find_client_message(client_message_id)
        if existing is None or existing[1] != conversation_id:
            raise ClientMessageConflict(client_message_id)
        return self.wait_for(store, existing[0])

    def wait_for(self, store: CallerStore, message_id: str) -> ChatReply:
        """The reply to a message that exists already (one the database made: a regeneration, an
        edit), waited for as `send` waits. Registered after the message was written, so it may
        have settled before: read once registered, it is not missed."""
        with self.waiter.expect(message_id) as expectation:
            outcome = store.message_outcome(message_id)
            if outcome is None or not outcome.settled:
                expectation.wait(self.reply_timeout_seconds)
                outcome = expectation.outcome or store.message_outcome(message_id)
        return self.reply_from(message_id, outcome)

    @staticmethod
    def reply_from(message_id: str, outcome: MessageOutcome | None) -> ChatReply:
        """The settled outcome as the caller gets it; raises ConversationNotFound / ReplyTimeout / ReplyFailed."""
        if outcome is None:
            # The caller's own message is gone: its conversation was deleted before the reply was
            # written. "It will be answered" (504) would be false; "no such conversation" is true.
            raise ConversationNotFound(message_id)
        if not outcome.settled:
            raise ReplyTimeout(message_id)
        if outcome.status == "stopped":
            return ChatReply(outcome.conversation_id, message_id, outcome.reply_id, outcome.reply or "", "stopped")
        if outcome.status == "failed" or outcome.reply_id is None or outcome.reply is None:
            raise ReplyFailed(message_id, outcome.error or "The message could not be answered.")
        return ChatReply(outcome.conversation_id, message_id, outcome.reply_id, outcome.reply)
