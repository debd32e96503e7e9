"""The reply engine's bounds and shutdown, in process: a full engine refuses (the door answers
503), shutdown refuses, drain waits for what runs and drops what has not started."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from chat.answering.engine import ReplyEngine
from tests.support.polling import wait_until


class GatedAnswers:
    """An `answer` that blocks until released, recording what it was given."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started: list[str] = []
        self.finished: list[str] = []

    async def __call__(self, message_id: str) -> None:
        self.started.append(message_id)
        while not self.release.is_set():  # a reply waiting on the network: the loop stays free
            await asyncio.sleep(0.005)
        if message_id == "crash":
            raise RuntimeError("a bug in one message")
        self.finished.append(message_id)


@pytest.fixture
def answers() -> Iterator[GatedAnswers]:
    gate = GatedAnswers()
    yield gate
    gate.release.set()


@pytest.fixture
def engines() -> Iterator[list[ReplyEngine]]:
    made: list[ReplyEngine] = []
    yield made
    for engine in made:
        engine.close()


def engine_of(engines: list[ReplyEngine], answers: GatedAnswers, concurrency: int, queue_size: int) -> ReplyEngine:
    engine = ReplyEngine(answers, concurrency, queue_size)
    engines.append(engine)
    return engine


@pytest.mark.parametrize(
    ("concurrency", "queue_size", "accepted"),
    [
        pytest.param(1, 0, ["a"], id="one at a time, no queue: the second is refused"),
        pytest.param(1, 1, ["a", "b"], id="one at a time, one queued: the third is refused"),
        pytest.param(2, 1, ["a", "b", "c"], id="two at a time, one queued: the fourth is refused"),
    ],
)
def test_a_full_engine_refuses(
    answers: GatedAnswers, engines: list[ReplyEngine], concurrency: int, queue_size: int, accepted: list[str]
) -> None:
    engine = engine_of(engines, answers, concurrency, queue_size)
    results = {message_id: engine.submit(message_id) for message_id in ["a", "b", "c", "d"]}
    assert [message_id for message_id, taken in results.items() if taken] == accepted
    answers.release.set()
    wait_until(lambda: sorted(answers.finished) == accepted)  # queued ones run once a slot is free
    wait_until(lambda: engine.in_flight() == 0)


def test_after_stop_accepting_nothing_is_taken(answers: GatedAnswers, engines: list[ReplyEngine]) -> None:
    engine = engine_of(engines, answers, 4, 4)
    engine.stop_accepting()
    assert not engine.accepting
    assert not engine.submit("a")
    assert answers.started == []


def test_drain_waits_for_running_work_and_drops_what_has_not_started(answers: GatedAnswers, engines: list[ReplyEngine]) -> None:
    engine = engine_of(engines, answers, 1, 2)
    assert engine.submit("running") and engine.submit("queued")
    wait_until(lambda: answers.started == ["running"])
    threading.Timer(0.1, answers.release.set).start()
    assert engine.drain(5)
    assert answers.finished == ["running"]  # "queued" was never claimed: it stays pending for the sweep
    assert engine.in_flight() == 0


def test_drain_reports_work_still_running_at_its_deadline(answers: GatedAnswers, engines: list[ReplyEngine]) -> None:
    engine = engine_of(engines, answers, 1, 0)
    engine.submit("slow")
    wait_until(lambda: answers.started)
    assert not engine.drain(0.05)
    assert engine.in_flight() == 1


def test_a_crashing_answer_frees_its_slot(answers: GatedAnswers, engines: list[ReplyEngine]) -> None:
    engine = engine_of(engines, answers, 1, 0)
    answers.release.set()
    assert engine.submit("crash")
    wait_until(lambda: engine.in_flight() == 0)
    assert engine.submit("next")
    wait_until(lambda: answers.finished == ["next"])


def test_a_message_submitted_again_while_it_runs_is_answered_once_more(
    answers: GatedAnswers, engines: list[ReplyEngine]
) -> None:
    """Handed on just as its own run ends (its claim said "waiting" a moment before the earlier
    message settled): the second submit must not be lost in the first run's tail."""
    engine = engine_of(engines, answers, 1, 0)
    assert engine.submit("b")
    wait_until(lambda: answers.started == ["b"])
    assert engine.submit("b")  # while its first run is still going
    answers.release.set()
    wait_until(lambda: answers.finished == ["b", "b"])
    wait_until(lambda: engine.in_flight() == 0)
    assert engine.submit("b")  # and a later submit is a new run, not swallowed
    wait_until(lambda: answers.finished == ["b", "b", "b"])
