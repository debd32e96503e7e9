"""The re-drive sweep: answers user messages nobody is answering. It covers a webhook lost while
the service was down, a 503 from a full pool, and a worker killed mid-generation. Every
instance runs it; the claim in the database decides which one actually generates."""

from __future__ import annotations

import threading

from chat.errors import StoreUnavailable
from chat.logging import get_logger
from chat.settings import Settings
from chat.store import MessageStore
from chat.workers import ReplyWorkers

logger = get_logger(__name__)
SWEEP_BATCH = 100


class RedriveSweep:
    def __init__(self, settings: Settings, store: MessageStore, workers: ReplyWorkers) -> None:
        self.settings = settings
        self.store = store
        self.workers = workers
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sweep_once(self) -> int:
        """Hand stalled messages to the workers; returns how many were handed over."""
        try:
            stalled = self.store.list_stalled_messages(self.settings.redrive_grace_seconds, SWEEP_BATCH)
        except StoreUnavailable as error:
            logger.warning("re-drive sweep could not reach the store", reason=str(error))
            return 0
        handed = 0
        for message_id in stalled:
            if not self.workers.submit(message_id):
                break  # full: the next sweep continues
            handed += 1
        if handed:
            logger.info("re-drive sweep handed messages to workers", count=handed)
        return handed

    def start(self) -> None:
        if self.settings.redrive_interval_seconds <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="redrive-sweep", daemon=True)
        self._thread.start()

    def stop(self, wait: bool = True) -> None:
        self._stop.set()
        if wait and self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        """Sweep at start-up (messages stranded while we were down), then on every interval."""
        while True:
            try:
                self.sweep_once()
            except Exception:
                logger.exception("re-drive sweep failed; will try again")
            if self._stop.wait(self.settings.redrive_interval_seconds):
                return
