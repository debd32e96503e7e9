"""The in-process side of a streamed reply: SSE requests of this process subscribe to a message
and receive its pieces as the pipeline makes them, unbatched, with no network in between.
A reply generated in another process reaches its SSE request through the database instead
(the checkpointed row, polled; see chat/sse.py)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class FeedEvent:
    """`delta` (offset, text) or the end: `done`, `failed` (error), `stopped`."""

    kind: str
    attempt: int
    offset: int = 0
    text: str = ""
    error: str | None = None


class ReplyFeed:
    def __init__(self) -> None:
        self._subscribers: dict[str, list[queue.SimpleQueue[FeedEvent]]] = {}
        self._lock = threading.Lock()

    @contextmanager
    def subscribe(self, message_id: str) -> Iterator[queue.SimpleQueue[FeedEvent]]:
        inbox: queue.SimpleQueue[FeedEvent] = queue.SimpleQueue()
        with self._lock:
            self._subscribers.setdefault(message_id, []).append(inbox)
        try:
            yield inbox
        finally:
            with self._lock:
                inboxes = self._subscribers.get(message_id, [])
                if inbox in inboxes:
                    inboxes.remove(inbox)
                if not inboxes:
                    self._subscribers.pop(message_id, None)

    def publish(self, message_id: str, event: FeedEvent) -> None:
        with self._lock:
            inboxes = list(self._subscribers.get(message_id, ()))
        for inbox in inboxes:
            inbox.put(event)
