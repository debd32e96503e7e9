"""The in-process side of a streamed reply: SSE requests of this process subscribe to a message
and receive its pieces, unbatched, as the pipeline makes them here, and, through the process's
ReplyChannels (chat/ports.py), as Realtime brings them from wherever else the reply is generated
(another worker process or instance). The SSE request keeps what extends its text and drops the
rest (chat/waiting/direct_stream.py), so the same piece arriving both ways is harmless."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeGuard

# The reply events broadcast on `chat:<conversation_id>` (chat/answering/broadcasts.py), as feed kinds.
REPLY_EVENT_KINDS = {"reply_delta": "delta", "reply_done": "done", "reply_failed": "failed", "reply_stopped": "stopped"}


@dataclass(frozen=True)
class FeedEvent:
    """`delta` (offset, text) or the end: `done`, `failed` (error), `stopped`."""

    kind: str
    attempt: int
    offset: int = 0
    text: str = ""
    error: str | None = None


def feed_event_of(event: object, payload: object) -> tuple[str, FeedEvent] | None:
    """A reply event as Realtime delivers it (its event name and payload) as (message_id,
    FeedEvent); None for any other event, or a payload that does not keep the contract."""
    kind = REPLY_EVENT_KINDS.get(event) if isinstance(event, str) else None
    if kind is None or not isinstance(payload, Mapping):
        return None
    message_id, attempt = payload.get("message_id"), payload.get("attempt")
    if not isinstance(message_id, str) or not _is_int(attempt):
        return None
    if kind == "delta":
        offset, delta = payload.get("offset"), payload.get("delta")
        if not _is_int(offset) or not isinstance(delta, str):
            return None
        return message_id, FeedEvent("delta", attempt, offset, delta)
    error = payload.get("error")
    return message_id, FeedEvent(kind, attempt, error=error if isinstance(error, str) else None)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


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
