"""The database webhook's payload (Supabase's shape: type, table, schema, record, old_record),
validated before anything acts on it. Only the ids matter: the pipeline reads the rest from the
database, so a delivery cannot smuggle content in."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class MessageRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: uuid.UUID
    conversation_id: uuid.UUID
    role: str


class DatabaseEvent(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    type: str
    table: str
    db_schema: str = Field(alias="schema")
    record: dict[str, Any] | None = None

    def new_user_message(self) -> MessageRecord | None:
        """The message to answer, or None for an event we deliberately ignore."""
        if (self.type, self.db_schema, self.table) != ("INSERT", "public", "messages") or self.record is None:
            return None
        message = MessageRecord.model_validate(self.record)
        return message if message.role == "user" else None
