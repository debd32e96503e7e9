"""Waiting for a reply, in process: settled here (no query), by a sibling worker (woken without
an outcome), found by the poller (written by another instance), or not at all (timeout)."""

from __future__ import annotations

import threading

from chat.errors import StoreUnavailable
from chat.outcome import MessageOutcome
from chat.waiting.waiter import ReplyWaiter
from tests.support.fakes import InMemoryDatabase, InMemoryMessageStore
from tests.support.polling import wait_until


def waiter_with_message() -> tuple[ReplyWaiter, InMemoryMessageStore, str]:
    db = InMemoryDatabase()
    store = InMemoryMessageStore(db)
    message_id = db.add_message(db.add_conversation("user-1"))
    return ReplyWaiter(store, poll_interval_seconds=0.01), store, message_id


def test_settled_in_this_process_wakes_the_waiter_with_the_outcome() -> None:
    waiter, _, message_id = waiter_with_message()
    outcome = MessageOutcome(message_id, "c", "done", None, "r", "Echo: hi")
    with waiter.expect(message_id) as expectation:
        threading.Timer(0.05, waiter.notify, (message_id, outcome)).start()
        assert expectation.wait(5)
    assert expectation.outcome == outcome
    assert waiter.waiting() == 0


def test_settled_by_a_sibling_wakes_the_waiter_to_read_the_outcome_itself() -> None:
    waiter, _, message_id = waiter_with_message()
    with waiter.expect(message_id) as expectation:
        threading.Timer(0.05, waiter.notify, (message_id,)).start()
        assert expectation.wait(5)
    assert expectation.outcome is None


def test_settled_by_another_instance_is_found_by_the_poller() -> None:
    waiter, store, message_id = waiter_with_message()
    with waiter.expect(message_id) as expectation:
        wait_until(lambda: "settled_messages" in store.calls)
        store.db.messages[message_id].status = "done"  # written by someone who cannot notify us
        assert expectation.wait(5)
    assert expectation.outcome is None


def test_nothing_settled_is_a_timeout() -> None:
    waiter, _, message_id = waiter_with_message()
    with waiter.expect(message_id) as expectation:
        assert not expectation.wait(0.05)
    assert waiter.waiting() == 0


def test_the_poller_survives_the_store_being_down() -> None:
    waiter, store, message_id = waiter_with_message()
    store.fail_next("settled_messages", StoreUnavailable("down"), StoreUnavailable("down"))
    with waiter.expect(message_id) as expectation:
        wait_until(lambda: store.calls.count("settled_messages") >= 3)
        store.db.messages[message_id].status = "failed"
        assert expectation.wait(5)


def test_every_waiter_of_one_message_is_woken() -> None:
    waiter, _, message_id = waiter_with_message()
    with waiter.expect(message_id) as first, waiter.expect(message_id) as second:
        assert waiter.waiting() == 2
        waiter.notify(message_id)
        assert first.wait(1) and second.wait(1)
