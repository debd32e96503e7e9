"""A bounded pool of reply workers per process. The webhook must answer in milliseconds, so the
work happens here; when the pool is full the door answers 503 and the sweep catches up later,
rather than queueing without limit and losing everything on a restart."""

from __future__ import annotations

import threading
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
        future = self._executor.submit(self._run, message_id, context)
        future.add_done_callback(lambda _: self._release(message_id))
        return True

    @property
    def accepting(self) -> bool:
        return self._accepting

    def in_flight(self) -> int:
        with self._lock:
            return len(self._in_flight)

    def shutdown(self, wait: bool = True) -> None:
        """Stop taking work; with `wait`, let what is running finish (the sweep takes the rest)."""
        with self._lock:
            self._accepting = False
        self._executor.shutdown(wait=wait, cancel_futures=True)

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


