"""The domain assembled for one process, as the doors see it: a few verbs (take a delivery, send
a message for a caller, open the caller's store, say whether we are ready) and the process's
lifecycle (start after the fork, shut down on SIGTERM). The doors never reach into its parts.

server/wiring.py builds it from settings with the real adapters; tests build it on in-memory
fakes (tests/support/fakes.py)."""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from chat.answering.engine import ReplyEngine
from chat.answering.model_allowlist import ModelAllowlist
from chat.answering.pipeline import ReplyPipeline
from chat.answering.redrive import RedriveSweep
from chat.answering.streaming import ReplyStreaming
from chat.caller import Caller
from chat.errors import MessageNotFound, StoreUnavailable
from chat.logging import get_logger
from chat.metrics import NO_METRICS, ServiceMetrics
from chat.ports import CallerStore, CallerStoreFactory, MessageStore
from chat.readiness import UP, Readiness
from chat.waiting.direct_chat import ChatReply, DirectChat
from chat.waiting.direct_stream import DirectStream, StreamEvent
from chat.waiting.settled import SettledMessages
from chat.waiting.waiter import ReplyWaiter

logger = get_logger(__name__)


class Delivery(enum.Enum):
    """What became of a webhook delivery. Anything but ACCEPTED leaves the message pending, for
    the re-drive sweep of this or another instance."""

    ACCEPTED = "accepted"
    BUSY = "busy"  # every reply worker and queue slot is taken
    SHUTTING_DOWN = "shutting_down"  # SIGTERM: this instance takes no new work


@dataclass
class ChatService:
    store: MessageStore
    open_caller_store: CallerStoreFactory
    pipeline: ReplyPipeline
    engine: ReplyEngine
    sweep: RedriveSweep
    waiter: ReplyWaiter
    direct_chat: DirectChat
    settled: SettledMessages
    models: ModelAllowlist
    direct_stream: DirectStream | None = None
    streaming: ReplyStreaming | None = None
    metrics: ServiceMetrics = NO_METRICS
    readiness: Readiness | None = None  # None: the database alone

    def __post_init__(self) -> None:
        if self.readiness is None:
            self.readiness = Readiness({"database": self.store.ping})

    def accept_delivery(self, message_id: str) -> Delivery:
        """Hand a user message to the reply engine, or say why not (the door answers 503)."""
        if not self.engine.accepting:
            delivery = Delivery.SHUTTING_DOWN
        elif not self.engine.submit(message_id):
            delivery = Delivery.BUSY
        else:
            delivery = Delivery.ACCEPTED
        self.metrics.webhook_delivery(delivery.value)
        return delivery

    def caller_store(self, caller: Caller) -> CallerStore:
        """The database as this verified caller sees it, under row-level security."""
        return self.open_caller_store(caller)

    # --- the caller's conversations, under row-level security -------------------------------

    def create_conversation(self, caller: Caller, fields: dict[str, Any]) -> dict[str, Any]:
        return self.caller_store(caller).create_conversation(fields)

    def list_conversations(self, caller: Caller, before: str | None, page_size: int) -> dict[str, Any]:
        return self.caller_store(caller).list_conversations(before, page_size)

    def get_conversation(self, caller: Caller, conversation_id: str) -> dict[str, Any]:
        return self.caller_store(caller).get_conversation(conversation_id)

    def delete_conversation(self, caller: Caller, conversation_id: str) -> None:
        self.caller_store(caller).delete_conversation(conversation_id)

    def conversation_history(self, caller: Caller, conversation_id: str, before: str | None, page_size: int) -> dict[str, Any]:
        """A page of the conversation's messages, newest first (ConversationNotFound if not the caller's)."""
        return self.caller_store(caller).conversation_history(conversation_id, before, page_size)

    def conversation_branch(
        self, caller: Caller, conversation_id: str, leaf: str | None, before: str | None, page_size: int
    ) -> dict[str, Any]:
        """A page of one branch of the conversation (to `leaf`, or its newest), with each message's versions."""
        return self.caller_store(caller).conversation_branch(conversation_id, leaf, before, page_size)

    def search_messages(self, caller: Caller, query: str, max_results: int) -> list[dict[str, Any]]:
        return self.caller_store(caller).search_messages(query, max_results)

    def usage(self, caller: Caller) -> dict[str, Any]:
        """The caller's messages and tokens today against their limits (chat_quota)."""
        return self.caller_store(caller).chat_quota()

    def regenerate_message(self, caller: Caller, conversation_id: str, message_id: str) -> str:
        """Ask again for the reply to the caller's message in this conversation (a reply's id
        stands for its message); the new message's id, answered like any other (await_reply,
        stream_reply). The old reply stays, as a version."""
        store = self.caller_store(caller)
        self._check_in_conversation(store, conversation_id, message_id)
        return store.regenerate_message(message_id)

    def edit_message(self, caller: Caller, conversation_id: str, message_id: str, content: str) -> str:
        """A new version of the caller's message with `content`, on a new branch; its id, answered
        like any other message."""
        store = self.caller_store(caller)
        self._check_in_conversation(store, conversation_id, message_id)
        return store.edit_message(message_id, content)

    def await_reply(self, caller: Caller, message_id: str) -> ChatReply:
        """Wait for the reply to the caller's message as send_message waits (see DirectChat.wait_for)."""
        return self.direct_chat.wait_for(self.caller_store(caller), message_id)

    def stream_reply(self, caller: Caller, conversation_id: str, message_id: str) -> Iterator[StreamEvent]:
        """The reply to the caller's new message as events, as stream_message gives them."""
        assert self.direct_stream is not None
        return self.direct_stream.open_written(self.caller_store(caller), conversation_id, message_id)

    @staticmethod
    def _check_in_conversation(store: CallerStore, conversation_id: str, message_id: str) -> None:
        """The SQL functions take the message alone: a message of another conversation than the
        path names must not grow a branch there (MessageNotFound, as for someone else's)."""
        if store.message_conversation(message_id) != conversation_id:
            raise MessageNotFound(message_id)

    def sent_message_id(self, caller: Caller, client_message_id: str) -> str | None:
        """The id of the caller's message sent with this idempotency key, if it exists."""
        found = self.caller_store(caller).find_client_message(client_message_id)
        return found[0] if found else None

    def send_message(self, caller: Caller, conversation_id: str, content: str, client_message_id: str | None) -> ChatReply:
        """Insert the message as the caller and wait for the pipeline's reply (see DirectChat)."""
        return self.direct_chat.send(self.caller_store(caller), conversation_id, content, client_message_id)

    def stream_message(
        self, caller: Caller, conversation_id: str, content: str, client_message_id: str | None
    ) -> Iterator[StreamEvent]:
        """Insert the message as the caller and return its reply's events (see DirectStream).
        Failures before the first event raise, as for send_message."""
        assert self.direct_stream is not None
        return self.direct_stream.open(self.caller_store(caller), conversation_id, content, client_message_id)

    def follow_reply(self, caller: Caller, conversation_id: str) -> tuple[str, Iterator[StreamEvent]] | None:
        """The reply to the caller's latest message of the conversation while that message is
        still being answered: the message's id and its reply's events from the first piece of
        text on (see DirectStream.follow). None when there is nothing under way (no message, or
        the latest is settled). Raises ConversationNotFound for a conversation not the caller's."""
        assert self.direct_stream is not None
        store = self.caller_store(caller)
        latest = store.latest_user_message(conversation_id)
        if latest is None:
            store.get_conversation(conversation_id)  # none of the caller's: tell "no such" from "empty"
            return None
        message_id, status = latest
        if status not in ("pending", "processing"):
            return None
        return message_id, self.direct_stream.follow(store, conversation_id, message_id)

    def stop_reply(self, caller: Caller, message_id: str) -> str:
        """Stop the caller's reply: asked in the database as the caller (RLS: only the owner), so
        every instance's reply tick sees it, and at once here if this process streams it.
        Returns the message's status (a settled message is left as it is)."""
        status = self.caller_store(caller).stop_reply(message_id)
        if self.streaming is not None:
            self.streaming.live.request_stop(message_id)
        return status

    def check_ready(self) -> dict[str, str]:
        """Each dependency's state, "ok" or "down: <reason>" (database, model, realtime), from a
        cache a few seconds old at most."""
        assert self.readiness is not None
        return self.readiness.check()

    @staticmethod
    def down(checks: dict[str, str]) -> list[str]:
        return [name for name, state in checks.items() if state != UP]

    def start(self) -> None:
        """Start the background work; gunicorn calls this once per worker process, after the fork."""
        self.engine.start()
        self.models.start()
        self.sweep.start()
        self.settled.start()

    def begin_shutdown(self) -> None:
        """SIGTERM: take no new webhooks (they get 503 and are re-driven elsewhere), stop sweeping."""
        self.engine.stop_accepting()
        self.sweep.stop(wait=False)
        self.settled.stop()
        self.models.stop()

    def finish_shutdown(self, drain_seconds: float) -> list[str]:
        """Let running generations finish for up to `drain_seconds`, then hand back the claims
        that could not finish, so another instance answers them now rather than after the lease.
        Returns the released message ids."""
        self.begin_shutdown()
        try:
            if self.engine.drain(drain_seconds):
                return []
            released = self.engine.run(self._release_claims(self.pipeline.active_claims()))
            logger.info("shutdown released unfinished claims", count=len(released))
            return released
        finally:
            # The loop's thread must not outlive the interpreter's finalization (its C event
            # loop would crash the exiting worker); closing it also closes its sockets.
            self.engine.close(timeout_seconds=1.0)

    async def _release_claims(self, claims: dict[str, str]) -> list[str]:
        released = []
        for message_id, claim_token in claims.items():
            try:
                if await self.pipeline.store.release_message(message_id, claim_token):
                    released.append(message_id)
            except StoreUnavailable:
                logger.warning("could not release a claim; its lease will expire", message_id=message_id)
        return released

    def close(self) -> None:
        """Stop the reply engine's loop and the background threads (tests; a process exit needs
        none of it)."""
        self.begin_shutdown()
        self.engine.close()
