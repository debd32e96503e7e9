"""The reply workers' bounds and shutdown, in process: a full pool refuses (the door answers
503), shutdown refuses, drain waits for what runs and drops what has not started."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from chat.workers import ReplyWorkers
from tests.support.polling import wait_until


class GatedAnswers:
    """An `answer` that blocks until released, recording what it was given."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started: list[str] = []
        self.finished: list[str] = []

    def __call__(self, message_id: str) -> None:
        self.started.append(message_id)
        self.release.wait(10)
        if message_id == "crash":
            raise RuntimeError("a bug in one message")
        self.finished.append(message_id)


@pytest.fixture
def answers() -> Iterator[GatedAnswers]:
    gate = GatedAnswers()
    yield gate
    gate.release.set()


@pytest.mark.parametrize(
    ("threads", "queue_size", "accepted"),
    [
        pytest.param(1, 0, ["a"], id="one thread, no queue: the second is refused"),
        pytest.param(1, 1, ["a", "b"], id="one thread, one queued: the third is refused"),
        pytest.param(2, 1, ["a", "b", "c"], id="two threads, one queued: the fourth is refused"),
    ],
)
def test_a_full_pool_refuses(answers: GatedAnswers, threads: int, queue_size: int, accepted: list[str]) -> None:
    workers = ReplyWorkers(answers, threads, queue_size)
    results = {message_id: workers.submit(message_id) for message_id in ["a", "b", "c", "d"]}
    assert [message_id for message_id, taken in results.items() if taken] == accepted
    answers.release.set()
    wait_until(lambda: sorted(answers.finished) == accepted)  # queued ones run once a thread is free
    wait_until(lambda: workers.in_flight() == 0)


def test_a_message_already_in_flight_counts_as_taken_without_a_second_run(answers: GatedAnswers) -> None:
    workers = ReplyWorkers(answers, 1, 0)
    assert workers.submit("a") and workers.submit("a")
    answers.release.set()
    assert workers.drain(5)
    assert answers.started == ["a"]


def test_after_stop_accepting_nothing_is_taken(answers: GatedAnswers) -> None:
    workers = ReplyWorkers(answers, 4, 4)
    workers.stop_accepting()
    assert not workers.accepting
    assert not workers.submit("a")
    assert answers.started == []


def test_drain_waits_for_running_work_and_drops_what_has_not_started(answers: GatedAnswers) -> None:
    workers = ReplyWorkers(answers, 1, 2)
    assert workers.submit("running") and workers.submit("queued")
    wait_until(lambda: answers.started == ["running"])
    threading.Timer(0.1, answers.release.set).start()
    assert workers.drain(5)
    assert answers.finished == ["running"]  # "queued" was never claimed: it stays pending for the sweep
    assert workers.in_flight() == 0


def test_drain_reports_work_still_running_at_its_deadline(answers: GatedAnswers) -> None:
    workers = ReplyWorkers(answers, 1, 0)
    workers.submit("slow")
    wait_until(lambda: answers.started)
    assert not workers.drain(0.05)
    assert workers.in_flight() == 1


def test_a_crashing_answer_frees_its_slot(answers: GatedAnswers) -> None:
    workers = ReplyWorkers(answers, 1, 0)
    answers.release.set()
    assert workers.submit("crash")
    wait_until(lambda: workers.in_flight() == 0)
    assert workers.submit("next")
    wait_until(lambda: answers.finished == ["next"])
