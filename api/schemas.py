"""Request bodies and query parameters of the REST door, validated strictly: a wrong type is a
400 that names the field, never a coercion that guesses."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict, Field, StrictStr

MAX_MESSAGE_CHARS = 32000  # the database's messages_user_content_length check


class ChatMessageIn(BaseModel):
    # user_id is tolerated for the original design's clients, and checked against the token.
    model_config = ConfigDict(extra="ignore")

    message: StrictStr = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)
    client_message_id: uuid.UUID | None = None
    user_id: StrictStr | None = None


class ConversationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: StrictStr | None = Field(None, max_length=200)
    system_prompt: StrictStr | None = Field(None, max_length=8000)
    model: StrictStr | None = Field(None, min_length=1, max_length=100)


class PageQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(50, ge=1, le=100)
    before: uuid.UUID | None = None
