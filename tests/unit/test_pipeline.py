"""The reply pipeline against each store and model fault, in process: what `answer` reports, how
the message ends, and what a waiting request is told. Every test runs twice: the reply asked
whole, and streamed (the default), through the same fakes."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from chat.answering.pipeline import INTERNAL_ERROR_MESSAGE, AnswerResult, ReplyPipeline
from chat.errors import ModelRejected, ModelUnavailable, StoreRejected, StoreUnavailable
from chat.outcome import MessageOutcome
from tests.support.fakes import InMemoryDatabase, InMemoryMessageStore, RecordingBroadcaster, ScriptedModel, reply_streaming
from tests.support.polling import wait_until

LEASE_SECONDS = 30
STREAMED = {"whole": False, "streamed": True}


@pytest.fixture(autouse=True, params=list(STREAMED))
def mode(request: pytest.FixtureRequest) -> Iterator[str]:
    Pipeline.streamed = STREAMED[request.param]
    yield request.param


class Pipeline:
    """A pipeline on fakes with one pending message, recording what it settles."""

    streamed = True

    def __init__(self, max_attempts: int = 5) -> None:
        self.db = InMemoryDatabase()
        self.store = InMemoryMessageStore(self.db)
        self.model = ScriptedModel()
        self.broadcaster = RecordingBroadcaster()
        self.settled: list[tuple[str, MessageOutcome | None]] = []
        self.results: list[AnswerResult] = []
        self.handed_on: list[str] = []
        self.pipeline = ReplyPipeline(
            self.store, self.model, default_model="default-model", lease_seconds=LEASE_SECONDS,
            max_attempts=max_attempts, context_token_budget=6000, context_max_messages=200,
            offered_models=["default-model", "conversation-model"],
            on_settled=lambda message_id, outcome: self.settled.append((message_id, outcome)),
            hand_on=lambda message_id: self.handed_on.append(message_id) is None,
            streaming=reply_streaming(self.store, self.model, self.broadcaster) if self.streamed else None,
        )
        self.conversation_id = self.db.add_conversation("user-1", system_prompt="Be brief.")
        self.message_id = self.db.add_message(self.conversation_id, "hello")

    def answer(self, message_id: str) -> AnswerResult:
        return asyncio.run(self.pipeline.answer(message_id))

    def completion(self) -> str:
        """The store call that writes the finished reply, in this mode."""
        return "finish_reply" if self.streamed else "complete_message_for_reply"

    def row(self) -> tuple[str, str | None, int]:
        row = self.db.messages[self.message_id]
        return row.status, row.error, row.attempts


def test_a_message_is_answered_once_and_its_waiter_gets_the_reply() -> None:
    p = Pipeline()
    assert p.answer(p.message_id) is AnswerResult.ANSWERED
    reply = p.db.messages[p.message_id].reply
    assert reply is not None and reply.content == "Echo: hello"
    assert p.row() == ("done", None, 1)
    assert p.settled == [(p.message_id, MessageOutcome(p.message_id, p.conversation_id, "done", None,
                                                        reply.reply_id, "Echo: hello"))]
    assert p.model.prompts == [[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello"}]]


def test_a_second_answer_of_a_settled_message_claims_nothing() -> None:
    p = Pipeline()
    p.answer(p.message_id)
    assert p.answer(p.message_id) is AnswerResult.NOT_CLAIMED
    assert len(p.model.prompts) == 1
    assert len(p.settled) == 1  # not ours to announce: whoever settled it told the waiters


def test_the_conversation_history_is_in_the_prompt_and_its_model_is_used() -> None:
    p = Pipeline()
    p.answer(p.message_id)
    p.db.conversations[p.conversation_id].fields["model"] = "conversation-model"
    second = p.db.add_message(p.conversation_id, "again")
    p.answer(second)
    assert p.model.prompts[-1] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "Echo: hello"},
        {"role": "user", "content": "again"},
    ]
    reply = p.db.messages[second].reply
    assert reply is not None and reply.content == "Echo: again"


@pytest.mark.parametrize(
    ("method", "fault", "result", "status", "error"),
    [
        pytest.param("claim_message_for_reply", StoreUnavailable("down"), AnswerResult.DEFERRED, "pending", None,
                     id="store down at the claim: left pending for the sweep"),
        pytest.param("complete_message_for_reply", StoreUnavailable("down"), AnswerResult.DEFERRED, "processing", None,
                     id="store down at the completion: the lease runs out and the sweep retries"),
        pytest.param("complete_message_for_reply", StoreRejected("no such function"), AnswerResult.FAILED, "failed",
                     INTERNAL_ERROR_MESSAGE, id="store refuses the completion: failed, with a readable error"),
    ],
)
def test_store_faults(method: str, fault: Exception, result: AnswerResult, status: str, error: str | None) -> None:
    p = Pipeline()
    p.store.fail_next(p.completion() if method == "complete_message_for_reply" else method, fault)
    assert p.answer(p.message_id) is result
    assert p.row()[:2] == (status, error)
    assert p.pipeline.active_claims() == {}


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        pytest.param(ModelUnavailable("The AI model is busy."), "The AI model is busy.", id="transient, retries spent"),
        pytest.param(ModelRejected("The AI model rejected this conversation (400): no."),
                     "The AI model rejected this conversation (400): no.", id="rejected by the provider"),
        pytest.param(RuntimeError("bug"), INTERNAL_ERROR_MESSAGE, id="unexpected error: no internals shown"),
    ],
)
def test_model_faults_fail_the_message_with_a_readable_error(fault: Exception, error: str) -> None:
    p = Pipeline()
    p.model.script.append(fault)
    assert p.answer(p.message_id) is AnswerResult.FAILED
    assert p.row() == ("failed", error, 1)
    assert p.settled == [(p.message_id, MessageOutcome(p.message_id, p.conversation_id, "failed", error, None, None))]


def test_a_model_fault_with_the_store_down_is_left_for_the_sweep() -> None:
    p = Pipeline()
    p.model.script.append(ModelUnavailable("busy"))
    p.store.fail_next("fail_message", StoreUnavailable("down"))
    assert p.answer(p.message_id) is AnswerResult.DEFERRED
    assert p.row() == ("processing", None, 1)
    assert p.settled == []


def test_a_message_deleted_during_generation_is_not_answered_and_its_waiter_is_woken() -> None:
    p = Pipeline()
    p.model.gate = threading.Event()
    worker = threading.Thread(target=p.answer, args=(p.message_id,))
    worker.start()
    wait_until(lambda: p.model.prompts)
    del p.db.messages[p.message_id]  # the conversation was deleted meanwhile
    p.model.gate.set()
    worker.join(5)
    # Whole, the completion finds no message and wakes the waiter; streamed, the reply row cannot
    # be begun, so nothing is settled here (the waiter finds the message gone on its next read).
    assert p.settled == ([] if p.streamed else [(p.message_id, None)])


def stale_worker(p: Pipeline) -> threading.Thread:
    """A worker generating while its lease runs out and another attempt claims the message."""
    p.model.gate = threading.Event()
    worker = threading.Thread(target=lambda: p.results.append(p.answer(p.message_id)))
    worker.start()
    wait_until(lambda: p.model.prompts)
    p.db.messages[p.message_id].lease_expires_at = p.db.clock() - 1
    assert asyncio.run(p.store.claim_message_for_reply(p.message_id, LEASE_SECONDS, 5, 6000, 200)) is not None
    return worker


@pytest.mark.parametrize(
    "model_says",
    [
        pytest.param(None, id="its reply is dropped"),
        pytest.param(ModelUnavailable("busy"), id="its failure is not recorded"),
    ],
)
def test_a_stale_worker_settles_nothing_and_tells_nobody(model_says: Exception | None) -> None:
    p = Pipeline()
    worker = stale_worker(p)
    if model_says is not None:
        p.model.script.append(model_says)
    assert p.model.gate is not None
    p.model.gate.set()
    worker.join(5)
    assert p.results == [AnswerResult.NOT_CLAIMED]
    assert p.row() == ("processing", None, 2)  # the current attempt still holds it
    assert p.db.messages[p.message_id].reply is None
    assert p.settled == []


def test_a_message_out_of_attempts_is_failed_not_claimed() -> None:
    p = Pipeline(max_attempts=2)
    p.db.messages[p.message_id].attempts = 2
    assert p.answer(p.message_id) is AnswerResult.NOT_CLAIMED
    assert p.row() == ("failed", "No reply could be generated after 2 attempts. Please send the message again.", 2)
    assert p.model.prompts == []


def test_the_claim_is_held_while_generating_and_dropped_after() -> None:
    p = Pipeline()
    p.model.gate = threading.Event()
    worker = threading.Thread(target=p.answer, args=(p.message_id,))
    worker.start()
    wait_until(lambda: p.model.prompts)
    assert list(p.pipeline.active_claims()) == [p.message_id]
    p.model.gate.set()
    worker.join(5)
    assert p.pipeline.active_claims() == {}


def test_a_later_message_waits_tells_nobody_and_is_handed_on_when_the_earlier_is_answered() -> None:
    p = Pipeline()
    second = p.db.add_message(p.conversation_id, "again")
    assert p.answer(second) is AnswerResult.WAITING
    assert (p.db.messages[second].status, p.settled, p.model.prompts) == ("pending", [], [])
    assert p.answer(p.message_id) is AnswerResult.ANSWERED
    assert p.handed_on == [second]
    assert p.answer(second) is AnswerResult.ANSWERED
    assert [m["content"] for m in p.model.prompts[-1]] == ["Be brief.", "hello", "Echo: hello", "again"]


def test_a_failed_message_hands_on_the_next_one_too() -> None:
    p = Pipeline()
    second = p.db.add_message(p.conversation_id, "again")
    p.model.script.append(ModelRejected("The AI model rejected this conversation (400): no."))
    assert p.answer(p.message_id) is AnswerResult.FAILED
    assert p.handed_on == [second]


class ClaimAnswerLost(InMemoryMessageStore):
    """The claim commits, then its answer is lost on the way back (a client-side timeout)."""

    async def claim_message_for_reply(self, *args: Any, **kwargs: Any) -> Any:
        await super().claim_message_for_reply(*args, **kwargs)
        raise StoreUnavailable("Supabase unreachable during claim_message_for_reply: ReadTimeout")


def test_a_claim_whose_answer_was_lost_is_released_by_its_token_at_once() -> None:
    p = Pipeline()
    p.pipeline.store = p.store = ClaimAnswerLost(p.db)
    assert p.answer(p.message_id) is AnswerResult.DEFERRED
    row = p.db.messages[p.message_id]
    assert (row.status, row.attempts, row.claim_token) == ("processing", 0, None)
    assert p.store.list_stalled_messages(3600, 10) == [p.message_id]  # the next sweep, not the lease
    assert p.store.calls == ["claim_message_for_reply", "release_message", "list_stalled_messages"]
    assert p.model.prompts == []


def test_a_conversation_whose_model_was_retired_fails_without_calling_it() -> None:
    p = Pipeline()
    p.db.conversations[p.conversation_id].fields["model"] = "retired-model"
    assert p.answer(p.message_id) is AnswerResult.FAILED
    status, error, _ = p.row()
    assert status == "failed" and error is not None and "'retired-model' is no longer offered" in error
    assert p.model.prompts == []
