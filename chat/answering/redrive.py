"""The re-drive sweep: answers user messages nobody is answering. It covers a webhook lost while
the service was down, a 503 from a full pool, and a worker killed mid-generation. Every
instance runs it; the claim in the database decides which one actually generates."""

from __future__ import annotations

import threading

from chat.answering.engine import ReplyEngine
from chat.errors import StoreUnavailable
from chat.logging import get_logger
from chat.metrics import NO_METRICS, ServiceMetrics
from chat.ports import MessageStore

logger = get_logger(__name__)
SWEEP_BATCH = 100


class RedriveSweep:
    def __init__(
        self,
        store: MessageStore,
        engine: ReplyEngine,
        *,
        interval_seconds: float,
        grace_seconds: int,
        metrics: ServiceMetrics = NO_METRICS,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.engine = engine
        self.interval_seconds = interval_seconds  # 0 turns the background sweep off
        self.grace_seconds = grace_seconds  # how old a pending message must be: younger ones have a webhook in flight
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sweep_once(self) -> int:
        """Hand stalled messages to the reply engine; returns how many were handed over."""
        try:
            stalled = self.store.list_stalled_messages(self.grace_seconds, SWEEP_BATCH)
        except StoreUnavailable as error:
            logger.warning("re-drive sweep could not reach the store", reason=str(error))
            return 0
        handed = 0
        for message_id in stalled:
            if not self.engine.submit(message_id):
                break  # full: the next sweep continues
            handed += 1
        if handed:
            self.metrics.redriven(handed)
            logger.info("re-drive sweep handed messages to the reply engine", count=handed)
        return handed

    def start(self) -> None:
        if self.interval_seconds <= 0 or self._thread is not None:
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
            if self._stop.wait(self.interval_seconds):
                return
