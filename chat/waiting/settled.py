"""What happens when a message settles in this process, in one place: whoever waits for it here
hears at once (with its outcome, so no read is needed), and so do the other worker processes of
the instance, whose waiters then read the outcome from the database. The pipeline calls this;
everyone else learns of the settled message only through the waiter."""

from __future__ import annotations

from collections.abc import Callable

from chat.outcome import MessageOutcome
from chat.ports import SiblingProcesses
from chat.waiting.waiter import ReplyWaiter


class NoSiblings:
    """A process alone (tests on in-memory fakes, a single worker): nobody else to tell."""

    def start(self, on_settled: Callable[[str], None]) -> None:
        del on_settled

    def broadcast(self, message_id: str) -> None:
        del message_id

    def stop(self) -> None:
        return None


class SettledMessages:
    def __init__(self, waiter: ReplyWaiter, siblings: SiblingProcesses) -> None:
        self.waiter = waiter
        self.siblings = siblings

    def __call__(self, message_id: str, outcome: MessageOutcome | None) -> None:
        self.waiter.notify(message_id, outcome)
        self.siblings.broadcast(message_id)

    def start(self) -> None:
        """Hear what the siblings settle (once per process, after the fork)."""
        self.siblings.start(on_settled=self.waiter.notify)

    def stop(self) -> None:
        self.siblings.stop()
