"""The reply pipeline: one user message in, exactly one assistant reply (or a readable failure) out.

Every step is a database call that is safe to repeat: the claim's lease keeps two workers from
generating at once, reply_to's uniqueness keeps two replies from being written, and a message
whose worker dies is claimed again by the re-drive sweep once its lease runs out. Every write
names its claim (claim_token), so a worker whose lease ran out while another attempt took the
message can neither fail nor answer it: its result is dropped and nobody waiting is told of it.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable

import structlog

from chat.context import build_prompt
from chat.errors import ClaimSuperseded, ModelError, StoreUnavailable
from chat.logging import get_logger
from chat.outcome import MessageOutcome
from chat.ports import ChatModel, ClaimedMessage, MessageStore
from chat.streaming import ReplyStreaming

logger = get_logger(__name__)
INTERNAL_ERROR_MESSAGE = "Something went wrong while answering this message. Please send it again."


class AnswerResult(enum.Enum):
    """What one `answer` call did (how the message ended is a MessageOutcome, for waiters)."""

    ANSWERED = "answered"
    FAILED = "failed"
    STOPPED = "stopped"  # its owner stopped it; the partial reply is kept
    NOT_CLAIMED = "not_claimed"  # someone else has it, or it is already settled
    DEFERRED = "deferred"  # the store was unreachable; the lease will expire and the sweep retries


class ReplyPipeline:
    def __init__(
        self,
        store: MessageStore,
        model: ChatModel,
        *,
        default_model: str,
        lease_seconds: int,
        max_attempts: int,
        context_token_budget: int,
        context_max_messages: int,
        on_settled: Callable[[str, MessageOutcome | None], None] | None = None,
        streaming: ReplyStreaming | None = None,
    ) -> None:
        self.store = store
        self.model = model
        self.default_model = default_model  # for conversations that name no model
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.context_token_budget = context_token_budget
        self.context_max_messages = context_max_messages
        self.on_settled = on_settled
        self.streaming = streaming  # None: ask for whole answers (the in-memory unit tests' model)
        self._active_claims: dict[str, str] = {}  # message id -> its claim's token, while generating
        self._claims_lock = threading.Lock()

    def active_claims(self) -> dict[str, str]:
        """The claims this process holds right now: what shutdown releases if it cannot finish."""
        with self._claims_lock:
            return dict(self._active_claims)

    def answer(self, message_id: str) -> AnswerResult:
        with structlog.contextvars.bound_contextvars(message_id=message_id):
            try:
                claim = self.store.claim_message_for_reply(
                    message_id, self.lease_seconds, self.max_attempts, self.context_token_budget, self.context_max_messages
                )
            except StoreUnavailable as error:
                logger.warning("could not claim message", reason=str(error))
                return AnswerResult.DEFERRED
            if claim is None:
                # Held by another attempt, or settled: either way not ours to announce. A waiter
                # woken now would read "processing"; the one who settles it tells the waiters.
                logger.info("message not claimable; skipped")
                return AnswerResult.NOT_CLAIMED
            with self._claims_lock:
                self._active_claims[message_id] = claim.claim_token
            try:
                with structlog.contextvars.bound_contextvars(conversation_id=claim.conversation_id, attempt=claim.attempt):
                    return self._answer_claimed(claim)
            finally:
                with self._claims_lock:
                    self._active_claims.pop(message_id, None)

    def _answer_claimed(self, claim: ClaimedMessage) -> AnswerResult:
        try:
            return self._generate_and_store(claim)
        except StoreUnavailable as error:
            logger.warning("store unavailable mid-reply; leaving it to the lease", reason=str(error))
            return AnswerResult.DEFERRED
        except ClaimSuperseded as error:
            # Not settled: the current attempt will settle it and tell the waiters then.
            logger.warning("claim superseded while generating; reply dropped", reason=str(error))
            return AnswerResult.NOT_CLAIMED
        except ModelError as error:
            logger.warning("model gave no reply; marking message failed", error_type=type(error).__name__)
            return self._fail(claim, error.user_message)
        except Exception:
            logger.exception("unexpected error answering message; marking it failed")
            return self._fail(claim, INTERNAL_ERROR_MESSAGE)

    def _generate_and_store(self, claim: ClaimedMessage) -> AnswerResult:
        if self.streaming is not None:
            return self._stream_and_store(claim, self.streaming)
        model_name = claim.model or self.default_model
        started = time.perf_counter()
        reply = self.model.complete(build_prompt(claim.system_prompt, claim.context), model_name)
        generated = time.perf_counter()
        stored = self.store.complete_message_for_reply(claim, reply)
        stored_at = time.perf_counter()
        if stored is None:
            logger.info("message vanished before its reply was written (conversation deleted)")
            self._settled(claim.message_id, None)
            return AnswerResult.NOT_CLAIMED
        logger.info(
            "message answered",
            reply_id=stored.reply_id,
            model=reply.model,
            context_messages=len(claim.context),
            model_ms=round((generated - started) * 1000, 1),
            store_ms=round((stored_at - generated) * 1000, 1),
        )
        self._settled(
            claim.message_id,
            MessageOutcome(claim.message_id, stored.conversation_id, "done", None, stored.reply_id, stored.content),
        )
        return AnswerResult.ANSWERED

    def _stream_and_store(self, claim: ClaimedMessage, streaming: ReplyStreaming) -> AnswerResult:
        started = time.perf_counter()
        outcome = streaming.answer(claim, build_prompt(claim.system_prompt, claim.context), claim.model or self.default_model)
        if outcome is None:
            logger.info("message vanished before its reply was written (conversation deleted)")
            self._settled(claim.message_id, None)
            return AnswerResult.NOT_CLAIMED
        logger.info(
            "message answered" if outcome.status == "done" else f"message {outcome.status}",
            reply_id=outcome.reply_id,
            context_messages=len(claim.context),
            streamed_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        self._settled(claim.message_id, outcome)
        return {"done": AnswerResult.ANSWERED, "stopped": AnswerResult.STOPPED}.get(outcome.status, AnswerResult.FAILED)

    def _fail(self, claim: ClaimedMessage, user_message: str) -> AnswerResult:
        try:
            failed = self.store.fail_message(claim, user_message)
        except StoreUnavailable as error:
            logger.warning("could not mark message failed; the sweep will retry it", reason=str(error))
            return AnswerResult.DEFERRED
        if not failed:
            # Our claim is stale: another attempt holds or settled the message, and tells the waiters.
            logger.warning("claim superseded; failure not recorded")
            return AnswerResult.NOT_CLAIMED
        outcome = MessageOutcome(claim.message_id, claim.conversation_id, "failed", user_message, None, None)
        self._settled(claim.message_id, outcome)
        return AnswerResult.FAILED

    def _settled(self, message_id: str, outcome: MessageOutcome | None) -> None:
        if self.on_settled is not None:
            self.on_settled(message_id, outcome)
