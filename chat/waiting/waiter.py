"""Waiting for a reply produced anywhere. The database is the meeting point: one poller thread
per process asks, for every waiting message at once, which ones are settled, so a reply written
by another worker or instance is seen within one poll interval at the cost of one query per
interval however many requests wait. A reply written in this process wakes its waiter at once
through `notify`, which the pipeline calls with the outcome, so that case costs no query at all.

Callers register (`expect`) before the message exists, so no reply can slip past unseen."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from chat.errors import StoreUnavailable
from chat.logging import get_logger
from chat.outcome import MessageOutcome
from chat.ports import MessageStore

logger = get_logger(__name__)


class Expectation:
    """One request waiting for one message."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.outcome: MessageOutcome | None = None

    def settle(self, outcome: MessageOutcome | None) -> None:
        self.outcome = outcome
        self._event.set()

    def wait(self, timeout_seconds: float) -> bool:
        """True once the message is settled; `outcome` is set when it was settled in this process."""
        return self._event.wait(timeout_seconds)


class ReplyWaiter:
    def __init__(self, store: MessageStore, poll_interval_seconds: float) -> None:
        self.store = store
        self.poll_interval_seconds = poll_interval_seconds
        self._waiting: dict[str, list[Expectation]] = {}
        self._lock = threading.Lock()
        self._someone_waits = threading.Condition(self._lock)
        self._poller: threading.Thread | None = None

    @contextmanager
    def expect(self, message_id: str) -> Iterator[Expectation]:
        expectation = Expectation()
        with self._lock:
            self._waiting.setdefault(message_id, []).append(expectation)
            self._ensure_poller()
            self._someone_waits.notify()
        try:
            yield expectation
        finally:
            with self._lock:
                expectations = self._waiting.get(message_id, [])
                if expectation in expectations:
                    expectations.remove(expectation)
                if not expectations:
                    self._waiting.pop(message_id, None)

    def notify(self, message_id: str, outcome: MessageOutcome | None = None) -> None:
        """The message is settled; with `outcome` the waiter needs no query to answer."""
        with self._lock:
            expectations = list(self._waiting.get(message_id, []))
        for expectation in expectations:
            expectation.settle(outcome)

    def waiting(self) -> int:
        with self._lock:
            return sum(len(expectations) for expectations in self._waiting.values())

    def _ensure_poller(self) -> None:
        # Started by the first waiter, so it is born in the worker process, not a master.
        if self._poller is None or not self._poller.is_alive():
            self._poller = threading.Thread(target=self._poll_forever, name="reply-waiter", daemon=True)
            self._poller.start()

    def _poll_forever(self) -> None:
        while True:
            with self._lock:
                while not self._waiting:
                    self._someone_waits.wait()
                message_ids = list(self._waiting)
            started = time.monotonic()
            try:
                for message_id in self.store.settled_messages(message_ids):
                    self.notify(message_id)
            except StoreUnavailable as error:
                logger.warning("reply poller could not reach the store", reason=str(error))
            except Exception:
                logger.exception("reply poller failed; will poll again")
            time.sleep(max(0.0, self.poll_interval_seconds - (time.monotonic() - started)))
