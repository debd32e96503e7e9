"""A client of streamed replies, as the contract tells frontends to be one: start from the reply
row (content, attempt), then apply only the reply_delta events that extend it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class Gap(AssertionError):
    """A delta starts past the text held: a client would re-read the row; a test fails."""


@dataclass
class ResumedReply:
    text: str = ""
    attempt: int = 0
    applied: list[int] = field(default_factory=list)  # offsets of the deltas that added text

    def apply(self, delta: dict[str, Any]) -> None:
        attempt, offset, piece = delta["attempt"], delta["offset"], delta["delta"]
        if attempt < self.attempt:
            return
        if attempt > self.attempt:
            self.text, self.attempt = "", attempt
        if offset + len(piece) <= len(self.text):
            return
        if offset > len(self.text):
            raise Gap(f"delta at {offset} past the {len(self.text)} characters held")
        self.text = self.text[:offset] + piece
        self.applied.append(offset)


def reply_row(db: Any, message_id: str) -> tuple[str, str, int | None, str | None, str] | None:
    """(content, status, attempt, error, id) of the message's reply row, if it has one."""
    row = db.execute(
        "select content, status, attempt, error, id::text from public.messages where reply_to = %s", (message_id,)
    ).fetchone()
    return tuple(row) if row else None  # type: ignore[return-value]


def replies(db: Any, message_id: str) -> int:
    return int(db.execute("select count(*) from public.messages where reply_to = %s", (message_id,)).fetchone()[0])


def words(count: int, tag: str = "w") -> str:
    return " ".join(f"{tag}{index}" for index in range(count))


def sse_events(lines: Any) -> Any:
    """(event, data) per Server-Sent Event from an iterator of text lines; ("comment", text) for
    comment lines such as the heartbeat."""
    import json

    event, data = None, []
    for line in lines:
        if line.startswith(":"):
            yield "comment", line[1:].strip()
        elif line.startswith("event:"):
            event = line[len("event:") :].strip()
        elif line.startswith("data:"):
            data.append(line[len("data:") :].strip())
        elif line == "" and event is not None:
            yield event, json.loads("\n".join(data)) if data else None
            event, data = None, []
