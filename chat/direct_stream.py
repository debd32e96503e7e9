"""POST /api/chat with `Accept: text/event-stream`: the same insert as the JSON path, then the
reply as it is generated, wherever that is.

The request hands its message to this process's reply workers at once (the webhook delivery,
wherever it lands, then finds it claimed and skips it), so the usual case is a reply generated
here: its pieces come through the in-process ReplyFeed with nothing in between. If another
worker or instance claimed it first (the webhook won the race, or an earlier message of the
conversation had to be answered first and its worker took this one next), the request follows
the reply row instead: one `reply_progress` read per CHAT_POLL_INTERVAL_SECONDS, deltas made from
what the row gained since (its checkpoints). Either way the `done` event carries what the JSON
answer carries, read from the settled outcome.

The generation never belongs to the request: a caller that disconnects stops only its own
stream (the generator is closed); the reply still lands in the row, unless the caller stops it."""

from __future__ import annotations

import copy
import queue
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from chat.direct_chat import DirectChat
from chat.errors import DuplicateClientMessage, ReplyFailed, ReplyTimeout, StoreUnavailable
from chat.logging import get_logger
from chat.ports import CallerStore
from chat.reply_feed import FeedEvent, ReplyFeed
from chat.waiter import Expectation, ReplyWaiter

logger = get_logger(__name__)
REPLY_TIMEOUT_MESSAGE = "No reply yet. The message is kept and will be answered: fetch it later from the history."


@dataclass(frozen=True)
class StreamEvent:
    """`delta` {offset, delta, attempt}, `done` (the ChatReply's JSON), `error` {error, message_id},
    or `heartbeat` (a comment line, to keep proxies from closing an idle connection)."""

    kind: str
    data: dict[str, Any]


class _Text:
    """What the caller has been sent so far, under the contract's resume rule."""

    def __init__(self) -> None:
        self.text = ""
        self.attempt = 0

    def local(self, event: FeedEvent) -> StreamEvent | None:
        return self._extend(event.attempt, event.offset, event.text)

    def from_row(self, content: str, attempt: int) -> StreamEvent | None:
        if attempt > self.attempt:
            return self._extend(attempt, 0, content)
        if attempt == self.attempt and len(content) > len(self.text):
            return self._extend(attempt, len(self.text), content[len(self.text) :])
        return None

    def _extend(self, attempt: int, offset: int, piece: str) -> StreamEvent | None:
        if attempt < self.attempt:
            return None
        if attempt > self.attempt:
            self.text, self.attempt = "", attempt
        if offset + len(piece) <= len(self.text) or offset > len(self.text):
            return None
        self.text = self.text[:offset] + piece
        return StreamEvent("delta", {"offset": offset, "delta": piece, "attempt": attempt})


class DirectStream:
    def __init__(
        self,
        direct_chat: DirectChat,
        waiter: ReplyWaiter,
        feed: ReplyFeed,
        generate_here: Callable[[str], bool],
        generating_here: Callable[[str], bool],
        *,
        poll_interval_seconds: float,
        heartbeat_seconds: float,
        idle_timeout_seconds: float,
    ) -> None:
        self.direct_chat = direct_chat
        self.waiter = waiter
        self.feed = feed
        self.generate_here = generate_here  # hand a message to this process's reply workers
        self.generating_here = generating_here  # does this process hold its claim right now?
        self.poll_interval_seconds = poll_interval_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.idle_timeout_seconds = idle_timeout_seconds

    def open(
        self, store: CallerStore, conversation_id: str, content: str, client_message_id: str | None
    ) -> Iterator[StreamEvent]:
        """Insert the message (errors raise here, before any event, so the door answers them with
        their status code, quota refusals included) and return its events."""
        message_id = str(uuid.uuid4())
        subscriptions = ExitStack()
        inbox = subscriptions.enter_context(self.feed.subscribe(message_id))
        expectation = subscriptions.enter_context(self.waiter.expect(message_id))
        try:
            store.insert_message(message_id, conversation_id, content, client_message_id)
        except DuplicateClientMessage:
            subscriptions.close()
            assert client_message_id is not None
            return iter([StreamEvent("done", self.direct_chat.retried(store, conversation_id, client_message_id).as_json())])
        except BaseException:
            subscriptions.close()
            raise
        self.generate_here(message_id)
        return self._follow(subscriptions, store, message_id, inbox, expectation)

    def follow(self, store: CallerStore, message_id: str) -> Iterator[StreamEvent]:
        """The events of a reply already under way, for a caller that comes back to it (a dropped
        connection, a reload): all its text so far, then the rest, to `done` or `error`. It
        follows the row even when the reply is generated here: the pieces sent before it came
        are in the row, not in the feed."""
        subscriptions = ExitStack()
        expectation = subscriptions.enter_context(self.waiter.expect(message_id))
        from_the_row = copy.copy(self)
        from_the_row.generating_here = lambda _message_id: False
        return from_the_row._follow(subscriptions, store, message_id, queue.SimpleQueue(), expectation)

    def _follow(
        self,
        subscriptions: ExitStack,
        store: CallerStore,
        message_id: str,
        inbox: queue.SimpleQueue[FeedEvent],
        expectation: Expectation,
    ) -> Iterator[StreamEvent]:
        with subscriptions:
            sent = _Text()
            last_progress = last_beat = time.monotonic()
            while True:
                try:
                    event: FeedEvent | None = inbox.get(timeout=self.poll_interval_seconds)
                except queue.Empty:
                    event = None
                now = time.monotonic()
                if event is not None and event.kind != "delta":
                    break
                update = sent.local(event) if event is not None else self._from_row(store, message_id, sent)
                if update is not None:
                    last_progress = now
                    yield update
                elif expectation.wait(0):
                    break
                if now - last_beat >= self.heartbeat_seconds:
                    last_beat = now
                    yield StreamEvent("heartbeat", {})
                if now - last_progress >= self.idle_timeout_seconds:
                    yield _error(ReplyTimeout(message_id), message_id)
                    return
            yield from self._final(store, message_id, expectation, sent)

    def _from_row(self, store: CallerStore, message_id: str, sent: _Text) -> StreamEvent | None:
        if self.generating_here(message_id):
            return None  # its pieces come through the feed
        try:
            progress = store.reply_progress(message_id)
        except StoreUnavailable as error:
            logger.warning("could not read the reply's progress", reason=str(error))
            return None
        if progress is None or progress.content is None or progress.attempt is None:
            return None
        return sent.from_row(progress.content, progress.attempt)

    def _final(self, store: CallerStore, message_id: str, expectation: Expectation, sent: _Text) -> Iterator[StreamEvent]:
        expectation.wait(self.poll_interval_seconds)  # settled here: its outcome follows the feed's end at once
        outcome = expectation.outcome or store.message_outcome(message_id)
        try:
            reply = DirectChat.reply_from(message_id, outcome)
        except (ReplyFailed, ReplyTimeout) as error:
            yield _error(error, message_id)
            return
        # Followed through the row: the text after its last checkpoint, so the deltas spell it all.
        tail = sent.from_row(reply.response, max(sent.attempt, 1))
        if tail is not None:
            yield tail
        yield StreamEvent("done", reply.as_json())


def _error(error: ReplyFailed | ReplyTimeout, message_id: str) -> StreamEvent:
    if isinstance(error, ReplyFailed):
        body = {"code": "reply_failed", "message": error.error}
    else:
        body = {"code": "reply_timeout", "message": REPLY_TIMEOUT_MESSAGE}
    return StreamEvent("error", {"error": body, "message_id": message_id})
