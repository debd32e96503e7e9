"""Fencing: a worker whose lease ran out while another attempt took the message can neither fail
nor answer it, a failed message never becomes done, and nobody waiting is told a result that is
not the message's final one. The races are driven step by step: a one-second lease, and a model
that waits until the test lets it answer or fail. The workers' answers run together on one event
loop sharing one store, as the reply engine runs them in a process. Each waits with a deadline,
never a sleep."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg
import pytest

from adapters.reply_store import PostgrestReplyStore
from chat.answering.pipeline import AnswerResult, ReplyPipeline
from chat.errors import ModelError, ModelUnavailable
from chat.outcome import MessageOutcome
from chat.ports import ModelReply
from tests.support.database import separate_migrated_database
from tests.support.deliveries import message_state, pending_message, replies_to
from tests.support.engine_loop import EngineLoop
from tests.support.polling import wait_until
from tests.support.stack import scratch_dir, start_test_stack

if TYPE_CHECKING:
    from devstack.postgres import LocalPostgres
    from devstack.stack import LocalStack

GATE_DEADLINE_SECONDS = 10.0


class GatedModel:
    """Stands in for the model (outside the system): each call waits, on the engine's loop, until
    the test opens the gate from its own thread, then answers or fails as the test said."""

    def __init__(self, answer: str, engine: EngineLoop) -> None:
        self.answer = answer
        self.engine = engine
        self.error: ModelError | None = None
        self.called = threading.Event()  # the test's thread waits for it
        self.gate = asyncio.Event()  # the loop waits for it

    async def complete(self, messages: list[dict[str, str]], model: str, max_tokens: int | None = None) -> ModelReply:
        self.called.set()
        try:
            await asyncio.wait_for(self.gate.wait(), GATE_DEADLINE_SECONDS)
        except asyncio.TimeoutError:
            raise ModelUnavailable("The test never let the model answer.") from None
        if self.error is not None:
            raise self.error
        return ModelReply(self.answer, model, 10, 5)

    def answer_now(self) -> None:
        self.engine.call_soon(self.gate.set)

    def fail_now(self, error: ModelError) -> None:
        self.error = error
        self.engine.call_soon(self.gate.set)


@dataclass
class Worker:
    """One pipeline answering one message on the engine's loop, as the reply engine does, with
    what it told the waiters recorded."""

    pipeline: ReplyPipeline
    model: GatedModel
    engine: EngineLoop
    told: list[tuple[str, MessageOutcome | None]] = field(default_factory=list)
    running: concurrent.futures.Future[AnswerResult] | None = None

    def answer(self, message_id: str) -> Worker:
        self.running = self.engine.submit(self.pipeline.answer(message_id))
        return self

    def finished(self) -> AnswerResult:
        assert self.running is not None
        return self.running.result(GATE_DEADLINE_SECONDS)


@pytest.fixture(scope="module")
def database_url(postgres_server: LocalPostgres) -> Iterator[str]:
    """A database no running service sweeps: with one-second leases, the session service's sweep
    would claim an expired message before the test's worker B could."""
    with separate_migrated_database(postgres_server.superuser_url, "stale_workers") as url:
        yield url


@pytest.fixture(scope="module")
def stack(database_url: str) -> Iterator[LocalStack]:
    """The gateway over that database only."""
    with scratch_dir("ai-chat-stale-") as folder:
        running = start_test_stack(folder, database_url)
        yield running
        running.stop()



@pytest.fixture(scope="module")
def store(stack: LocalStack, engine: EngineLoop) -> PostgrestReplyStore:
    assert stack.keys is not None
    return engine.reply_store(stack.api_url, stack.keys.api_key("service_role"))


@pytest.fixture
def make_worker(store: PostgrestReplyStore, engine: EngineLoop) -> Iterator[Any]:
    """Workers sharing one store on one loop, as the reply engine's answers do; one-second leases."""
    workers: list[Worker] = []

    def make(answer: str, max_attempts: int = 5) -> Worker:
        model = GatedModel(answer, engine)
        pipeline = ReplyPipeline(
            store, model, default_model="fake-model", lease_seconds=1, max_attempts=max_attempts,
            context_token_budget=6000, context_max_messages=200,
        )
        worker = Worker(pipeline, model, engine)
        worker.pipeline.on_settled = lambda message_id, outcome: worker.told.append((message_id, outcome))
        workers.append(worker)
        return worker

    yield make
    for worker in workers:  # never leave an answer waiting in the model
        worker.model.answer_now()
        if worker.running is not None:
            concurrent.futures.wait([worker.running], GATE_DEADLINE_SECONDS)


def claimed_by(db: psycopg.Connection, message_id: str, attempt: int) -> bool:
    return message_state(db, message_id) == ("processing", None, attempt)


def lease_ran_out(db: psycopg.Connection, message_id: str) -> bool:
    row = db.execute("select lease_expires_at < now() from public.messages where id = %s", (message_id,)).fetchone()
    return bool(row and row[0])


def stale_and_superseded(db: psycopg.Connection, make_worker: Any, message_id: str) -> tuple[Worker, Worker]:
    """Worker A claims and blocks in the model; its lease runs out; worker B claims (attempt 2)
    and blocks in the model too."""
    a = make_worker("A's answer").answer(message_id)
    assert a.model.called.wait(GATE_DEADLINE_SECONDS)
    wait_until(lambda: lease_ran_out(db, message_id))
    b = make_worker("B's answer").answer(message_id)
    assert b.model.called.wait(GATE_DEADLINE_SECONDS)
    assert claimed_by(db, message_id, 2)
    return a, b


def test_stale_worker_cannot_fail_a_message_another_attempt_holds(db: psycopg.Connection, make_worker: Any) -> None:
    message_id, _ = pending_message(db)
    a, b = stale_and_superseded(db, make_worker, message_id)

    a.model.fail_now(ModelUnavailable("The model is unavailable right now."))
    outcome = a.finished()
    assert claimed_by(db, message_id, 2)  # still B's: no "failed" flashed to the author
    assert a.told == []  # a waiting caller was not given A's failure
    assert outcome is AnswerResult.NOT_CLAIMED

    b.model.answer_now()
    assert b.finished() is AnswerResult.ANSWERED
    assert message_state(db, message_id) == ("done", None, 2)
    [(reply_id, content)] = replies_to(db, message_id)
    assert content == "B's answer"
    [(_, told)] = b.told
    assert told is not None and (told.status, told.reply_id, told.reply) == ("done", reply_id, "B's answer")


def test_stale_workers_reply_is_dropped_while_the_current_attempt_answers(
    db: psycopg.Connection, make_worker: Any
) -> None:
    message_id, _ = pending_message(db)
    a, b = stale_and_superseded(db, make_worker, message_id)

    a.model.answer_now()
    outcome = a.finished()
    assert claimed_by(db, message_id, 2)
    assert replies_to(db, message_id) == []
    assert a.told == []
    assert outcome is AnswerResult.NOT_CLAIMED

    b.model.answer_now()
    assert b.finished() is AnswerResult.ANSWERED
    assert [content for _, content in replies_to(db, message_id)] == ["B's answer"]
    assert message_state(db, message_id) == ("done", None, 2)


def test_worker_that_finds_the_message_held_tells_nobody(db: psycopg.Connection, make_worker: Any) -> None:
    """A duplicate delivery while another attempt generates: no waiter is woken to read "processing"."""
    message_id, _ = pending_message(db)
    a = make_worker("A's answer").answer(message_id)
    assert a.model.called.wait(GATE_DEADLINE_SECONDS)
    duplicate = make_worker("never asked").answer(message_id)
    assert duplicate.finished() is AnswerResult.NOT_CLAIMED
    assert duplicate.told == []
    a.model.answer_now()
    assert a.finished() is AnswerResult.ANSWERED
    assert [outcome.status for _, outcome in a.told if outcome is not None] == ["done"]


def test_stale_worker_finishing_after_the_answer_reports_that_answer(
    db: psycopg.Connection, make_worker: Any
) -> None:
    """The current attempt answered first: the stale worker's reply is dropped, and what it tells
    its waiters is the message's final answer, not its own."""
    message_id, _ = pending_message(db)
    a, b = stale_and_superseded(db, make_worker, message_id)
    b.model.answer_now()
    assert b.finished() is AnswerResult.ANSWERED
    a.model.answer_now()
    assert a.finished() is AnswerResult.ANSWERED
    [(reply_id, content)] = replies_to(db, message_id)
    assert content == "B's answer"
    [(_, told)] = a.told
    assert told is not None and (told.status, told.reply_id, told.reply) == ("done", reply_id, "B's answer")


def test_failed_message_never_becomes_done(db: psycopg.Connection, make_worker: Any) -> None:
    """Out of attempts when the sweep finds A's lease over: failed, and A's late reply is refused."""
    message_id, _ = pending_message(db)
    a = make_worker("A's late answer", max_attempts=1).answer(message_id)
    assert a.model.called.wait(GATE_DEADLINE_SECONDS)
    wait_until(lambda: lease_ran_out(db, message_id))
    sweep = make_worker("never asked", max_attempts=1).answer(message_id)
    assert sweep.finished() is AnswerResult.NOT_CLAIMED  # the waiter's poll finds it failed
    status, error, attempts = message_state(db, message_id)
    assert (status, attempts) == ("failed", 1) and "after 1 attempts" in error

    a.model.answer_now()
    outcome = a.finished()
    assert message_state(db, message_id) == (status, error, attempts)
    assert replies_to(db, message_id) == []
    assert a.told == []
    assert outcome is AnswerResult.NOT_CLAIMED
    assert not sweep.model.called.is_set()


def test_stale_worker_cannot_release_another_attempts_claim(db: psycopg.Connection, make_worker: Any) -> None:
    """Shutdown hands back what this process holds; a claim it lost is no longer its to hand back."""
    message_id, _ = pending_message(db)
    a, b = stale_and_superseded(db, make_worker, message_id)
    [stale_claim] = a.pipeline.active_claims().values()
    assert a.engine.run(a.pipeline.store.release_message(message_id, stale_claim)) is False
    assert claimed_by(db, message_id, 2) and not lease_ran_out(db, message_id)
    a.model.answer_now()
    a.finished()
    assert claimed_by(db, message_id, 2) and replies_to(db, message_id) == []
    b.model.answer_now()
    assert b.finished() is AnswerResult.ANSWERED
