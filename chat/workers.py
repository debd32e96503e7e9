"""A bounded pool of reply workers per process. The webhook must answer in milliseconds, so the
work happens here; when the pool is full the door answers 503 and the sweep catches up later,
rather than queueing without limit and losing everything on a restart."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import structlog

from chat.logging import get_logger

logger = get_logger(__name__)


class ReplyWorkers:
    def __init__(self, answer: Callable[[str], object], threads: int, queue_size: int) -> None:
        self._answer = answer
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="reply-worker")
        self._capacity = threading.BoundedSemaphore(threads + queue_size)
        self._in_flight: set[str] = set()
        self._lock = threading.Lock()
        self._accepting = True

    def submit(self, message_id: str) -> bool:
        """Take the message if there is room. A message already in flight here counts as taken."""
        with self._lock:
            if not self._accepting:
                return False
            if message_id in self._in_flight:
                return True
            if not self._capacity.acquire(blocking=False):
                return False
            self._in_flight.add(message_id)
        context = structlog.contextvars.get_contextvars()
        try:
            future = self._executor.submit(self._run, message_id, context)
        except RuntimeError:  # the executor shut down between the check and the submit
            self._release(message_id)
            return False
        future.add_done_callback(lambda _: self._release(message_id))
        return True

    @property
    def accepting(self) -> bool:
        return self._accepting

    def in_flight(self) -> int:
        with self._lock:
            return len(self._in_flight)

    def stop_accepting(self) -> None:
        with self._lock:
            self._accepting = False

    def drain(self, timeout_seconds: float) -> bool:
        """Stop taking work, drop what has not started (it was never claimed, so it stays
        pending for the sweep) and wait up to the timeout for what is running. True if all done."""
        self.stop_accepting()
        self._executor.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + timeout_seconds
        while self.in_flight() and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.in_flight() == 0

    def _run(self, message_id: str, context: dict[str, object]) -> None:
        with structlog.contextvars.bound_contextvars(**context):
            try:
                self._answer(message_id)
            except Exception:
                logger.exception("reply worker crashed", message_id=message_id)

    def _release(self, message_id: str) -> None:
        with self._lock:
            self._in_flight.discard(message_id)
        self._capacity.release()


