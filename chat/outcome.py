"""How a user message ended, as a waiting caller needs it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MessageOutcome:
    message_id: str
    conversation_id: str
    status: str
    error: str | None
    reply_id: str | None
    reply: str | None
    next_message_id: str | None = None  # the conversation's next message, once this one settled

    @property
    def settled(self) -> bool:
        return self.status in ("done", "failed", "stopped")
