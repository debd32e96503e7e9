"""Waiting for a reply produced anywhere. The database is the meeting point: one poller thread
per process asks, for every waiting message at once, which ones are settled, so a reply written
by another worker or instance is seen within one poll interval at the cost of one query per
interval however many requests wait. A reply written in this process wakes its waiter at once
through `notify`, which the pipeline calls."""

from __future__ import annotations

import threading
import time

from chat.errors import StoreUnavailable
from chat.logging import get_logger
from chat.store import MessageStore

logger = get_logger(__name__)


class ReplyWaiter:
    def __init__(self, store: MessageStore, poll_interval_seconds: float) -> None:
        self.store = store
        self.poll_interval_seconds = poll_interval_seconds
        self._waiting: dict[str, list[threading.Event]] = {}
        self._lock = threading.Lock()
        self._poller: threading.Thread | None = None
        self._wake_poller = threading.Condition(self._lock)

    def wait(self, message_id: str, timeout_seconds: float) -> bool:
        """Block until the message is settled (True) or the timeout passes (False)."""
        event = threading.Event()
        with self._lock:
            self._waiting.setdefault(message_id, []).append(event)
            self._ensure_poller()
            self._wake_poller.notify()
        try:
            return event.wait(timeout_seconds)
        finally:
            with self._lock:
                events = self._waiting.get(message_id, [])
                if event in events:
                    events.remove(event)
                if not events:
                    self._waiting.pop(message_id, None)

    def notify(self, message_id: str) -> None:
        with self._lock:
            for event in self._waiting.get(message_id, []):
                event.set()

    def waiting(self) -> int:
        with self._lock:
            return sum(len(events) for events in self._waiting.values())

    def _ensure_poller(self) -> None:
        # Started lazily by the first waiter, so it is born in the worker process, not a master.
        if self._poller is None or not self._poller.is_alive():
            self._poller = threading.Thread(target=self._poll_forever, name="reply-waiter", daemon=True)
            self._poller.start()

    def _poll_forever(self) -> None:
        while True:
            with self._lock:
                while not self._waiting:
                    self._wake_poller.wait()
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
