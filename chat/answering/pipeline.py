"""The reply pipeline: one user message in, exactly one assistant reply (or a readable failure) out.

Every step is a database call that is safe to repeat: the claim's lease keeps two workers from
generating at once, reply_to's uniqueness keeps two replies from being written, and a message
whose worker dies is claimed again by the re-drive sweep once its lease runs out. Every write
names its claim (claim_token), so a worker whose lease ran out while another attempt took the
message can neither fail nor answer it: its result is dropped and nobody waiting is told of it.

A conversation is answered one message at a time, in its order (seq): a message whose earlier
sibling is unanswered is not claimed (WAITING), and whoever settles that sibling is told which
message comes next and hands it to the workers (`hand_on`), so each reply sees every earlier
message and its reply.

A conversation's first answered turn also asks for its title (chat/answering/titles.py), in a task
of its own once the reply is stored and its successor handed on: nothing here waits for it.
"""

from __future__ import annotations

import enum
import time
import uuid
from collections.abc import Callable

import structlog

from chat.answering.claimed_reply import ClaimedReply
from chat.answering.context import build_prompt
from chat.answering.streaming import ReplyStreaming
from chat.answering.titles import ConversationTitles
from chat.errors import ClaimSuperseded, ModelError, ModelRejected, StoreUnavailable
from chat.logging import get_logger
from chat.metrics import NO_METRICS, ServiceMetrics
from chat.outcome import MessageOutcome
from chat.ports import ChatModel, ClaimedMessage, ReplyStore, WaitingMessage

logger = get_logger(__name__)
INTERNAL_ERROR_MESSAGE = "Something went wrong while answering this message. Please send it again."


class AnswerResult(enum.Enum):
    """What one `answer` call did (how the message ended is a MessageOutcome, for waiters)."""

    ANSWERED = "answered"
    FAILED = "failed"
    STOPPED = "stopped"  # its owner stopped it; the partial reply is kept
    NOT_CLAIMED = "not_claimed"  # someone else has it, or it is already settled
    WAITING = "waiting"  # an earlier message of its conversation comes first; it is handed on after
    DEFERRED = "deferred"  # the store was unreachable; the lease will expire and the sweep retries


SETTLED_HERE = (AnswerResult.ANSWERED, AnswerResult.FAILED, AnswerResult.STOPPED)


class ReplyPipeline:
    """Runs on the reply engine's loop (chat/answering/engine.py): every step awaits the network."""

    def __init__(
        self,
        store: ReplyStore,
        model: ChatModel,
        *,
        default_model: str,
        lease_seconds: int,
        max_attempts: int,
        context_token_budget: int,
        context_max_messages: int,
        offered_models: list[str] | None = None,
        on_settled: Callable[[str, MessageOutcome | None], None] | None = None,
        streaming: ReplyStreaming | None = None,
        hand_on: Callable[[str], bool] | None = None,
        metrics: ServiceMetrics = NO_METRICS,
        titles: ConversationTitles | None = None,
    ) -> None:
        self.store = store
        self.model = model
        self.default_model = default_model  # for conversations that name no model
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.context_token_budget = context_token_budget
        self.context_max_messages = context_max_messages
        self.offered_models = offered_models or [default_model]  # the operator's allowlist
        self.on_settled = on_settled
        self.streaming = streaming  # None: ask for whole answers (the in-memory unit tests' model)
        self.hand_on = hand_on  # queues the next message of a conversation (the workers' submit)
        self.metrics = metrics
        self.titles = titles  # None: conversations are not titled (GENERATE_TITLES=false)
        self._active_claims: dict[str, str] = {}  # message id -> its claim's token, while generating

    def active_claims(self) -> dict[str, str]:
        """The claims this process holds right now: what shutdown releases if it cannot finish."""
        return dict(self._active_claims)

    def holds_claim(self, message_id: str) -> bool:
        """Whether this process is generating the message's reply now (any thread may ask)."""
        return message_id in self._active_claims

    async def answer(self, message_id: str) -> AnswerResult:
        started = time.perf_counter()
        result = await self._answer(message_id, started)
        self.metrics.reply_finished(result.value, time.perf_counter() - started if result in SETTLED_HERE else None)
        return result

    async def _answer(self, message_id: str, started: float) -> AnswerResult:
        with structlog.contextvars.bound_contextvars(message_id=message_id):
            claim_token = str(uuid.uuid4())
            try:
                claim = await self.store.claim_message_for_reply(
                    message_id,
                    self.lease_seconds,
                    self.max_attempts,
                    self.context_token_budget,
                    self.context_max_messages,
                    claim_token,
                )
            except StoreUnavailable as error:
                logger.warning("could not claim message", reason=str(error))
                await self._release_unknown_claim(message_id, claim_token)
                return AnswerResult.DEFERRED
            if isinstance(claim, WaitingMessage):
                logger.info("message waits for an earlier one of its conversation", waiting_for=claim.waiting_for)
                return AnswerResult.WAITING
            if claim is None:
                # Held by another attempt, or settled: either way not ours to announce. A waiter
                # woken now would read "processing"; the one who settles it tells the waiters.
                logger.info("message not claimable; skipped")
                return AnswerResult.NOT_CLAIMED
            self._active_claims[message_id] = claim.claim_token
            try:
                with structlog.contextvars.bound_contextvars(conversation_id=claim.conversation_id, attempt=claim.attempt):
                    return await self._answer_claimed(ClaimedReply(self.store, claim), started)
            finally:
                self._active_claims.pop(message_id, None)

    async def _release_unknown_claim(self, message_id: str, claim_token: str) -> None:
        """The claim call failed, but it may have committed (a timeout after the database did the
        work): hand back whatever our token holds now, so the message is not stranded for a lease
        and the attempt is not counted. Nothing to release is the usual, harmless answer."""
        try:
            if await self.store.release_message(message_id, claim_token):
                logger.info("released a claim whose answer was lost")
        except StoreUnavailable as error:
            logger.warning("could not release an uncertain claim; its lease will expire", reason=str(error))

    async def _answer_claimed(self, writes: ClaimedReply, started: float) -> AnswerResult:
        try:
            return await self._generate_and_store(writes, started)
        except StoreUnavailable as error:
            logger.warning("store unavailable mid-reply; leaving it to the lease", reason=str(error))
            return AnswerResult.DEFERRED
        except ClaimSuperseded as error:
            # Not settled: the current attempt will settle it and tell the waiters then.
            logger.warning("claim superseded while generating; reply dropped", reason=str(error))
            self.metrics.claim_superseded()
            return AnswerResult.NOT_CLAIMED
        except ModelError as error:
            logger.warning("model gave no reply; marking message failed", error_type=type(error).__name__)
            return await self._fail(writes, error.user_message)
        except Exception:
            logger.exception("unexpected error answering message; marking it failed")
            return await self._fail(writes, INTERNAL_ERROR_MESSAGE)

    async def _generate_and_store(self, writes: ClaimedReply, answer_started: float) -> AnswerResult:
        claim = writes.claim
        model_name = claim.model or self.default_model
        if model_name not in self.offered_models:
            # Written while it was offered, retired since: never call a model the operator dropped.
            raise ModelRejected(
                f"The model '{model_name[:100]}' is no longer offered here. Choose another model for this "
                "conversation (or none, for the default) and send the message again."
            )
        if claim.system_prompt_trimmed:
            logger.info("system prompt cut to fit the token budget", budget=self.context_token_budget)
        if self.streaming is not None:
            return await self._stream_and_store(writes, self.streaming, model_name, answer_started)
        started = time.perf_counter()
        reply = await self.model.complete(build_prompt(claim.system_prompt, claim.context), model_name)
        generated = time.perf_counter()
        self.metrics.tokens(reply.prompt_tokens or 0, reply.completion_tokens or 0)
        stored = await writes.complete(reply)
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
        self._hand_on(stored.next_message_id)
        self._title_first_turn(claim, stored.conversation_id)
        return AnswerResult.ANSWERED

    async def _stream_and_store(
        self, writes: ClaimedReply, streaming: ReplyStreaming, model_name: str, answer_started: float
    ) -> AnswerResult:
        claim = writes.claim
        started = time.perf_counter()
        outcome = await streaming.answer(writes, build_prompt(claim.system_prompt, claim.context), model_name, answer_started)
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
        self._hand_on(outcome.next_message_id)
        if outcome.status == "done":
            self._title_first_turn(claim, outcome.conversation_id)
        return {"done": AnswerResult.ANSWERED, "stopped": AnswerResult.STOPPED}.get(outcome.status, AnswerResult.FAILED)

    async def _fail(self, writes: ClaimedReply, user_message: str) -> AnswerResult:
        claim = writes.claim
        try:
            result = await writes.fail(user_message)
        except StoreUnavailable as error:
            logger.warning("could not mark message failed; the sweep will retry it", reason=str(error))
            return AnswerResult.DEFERRED
        self._hand_on(result.next_message_id)
        if not result.failed:
            # Our claim is stale: another attempt holds or settled the message, and tells the waiters.
            logger.warning("claim superseded; failure not recorded")
            self.metrics.claim_superseded()
            return AnswerResult.NOT_CLAIMED
        outcome = MessageOutcome(claim.message_id, claim.conversation_id, "failed", user_message, None, None)
        self._settled(claim.message_id, outcome)
        return AnswerResult.FAILED

    def _hand_on(self, next_message_id: str | None) -> None:
        """Queue the conversation's next message now that this one is settled. Refused (workers full
        or shutting down), it stays pending for the sweep, like any undelivered message."""
        if next_message_id and self.hand_on is not None and not self.hand_on(next_message_id):
            logger.warning("could not hand on the next message; the sweep will", next_message_id=next_message_id)

    def _title_first_turn(self, claim: ClaimedMessage, conversation_id: str) -> None:
        """A reply whose context holds no earlier reply answered its branch's first turn: the one
        time its conversation may want a title (the database says whether it does). Later replies
        skip the round trip. Scheduled, never awaited."""
        if self.titles is not None and not any(turn["role"] == "assistant" for turn in claim.context):
            self.titles.schedule(conversation_id)

    def _settled(self, message_id: str, outcome: MessageOutcome | None) -> None:
        if self.on_settled is not None:
            self.on_settled(message_id, outcome)
