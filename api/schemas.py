"""Request bodies and query parameters of the REST door, validated strictly: a wrong type is a
400 that names the field, never a coercion that guesses."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr

MAX_MESSAGE_CHARS = 32000  # the database's messages_user_content_length check
# Postgres text cannot hold U+0000; saying so in the schema makes it a 400 here and in the document.
NO_NUL = r"^[^\x00]*$"


class ChatMessageIn(BaseModel):
    # user_id is tolerated for the original design's clients, and checked against the token.
    model_config = ConfigDict(extra="ignore")

    message: StrictStr = Field(min_length=1, max_length=MAX_MESSAGE_CHARS, pattern=NO_NUL)
    client_message_id: uuid.UUID | None = None
    user_id: StrictStr | None = None


class EditMessageIn(BaseModel):
    """The new version's text, held to the rules of a message sent."""

    model_config = ConfigDict(extra="forbid")

    message: StrictStr = Field(min_length=1, max_length=MAX_MESSAGE_CHARS, pattern=NO_NUL)


class ConversationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: StrictStr | None = Field(None, max_length=200, pattern=NO_NUL)
    # Its length limit is the database's (per user, operator-set): a longer one is a 400 from there.
    system_prompt: StrictStr | None = Field(None, pattern=NO_NUL)
    model: StrictStr | None = Field(None, min_length=1, max_length=100, pattern=NO_NUL)


class PageQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(50, ge=1, le=100)
    before: uuid.UUID | None = None


class HistoryQuery(PageQuery):
    """Without `leaf`: every message of the conversation in order (the log, as before branches).
    With one: the branch through that message; `newest` for the branch of the newest message."""

    leaf: uuid.UUID | Literal["newest"] | None = None


MAX_SEARCH_CHARS = 200
# Something besides ASCII white space, and no U+0000: the one rule, here and in the document
# (a regular expression reads alike in both, where "white space" does not).
NOT_BLANK = r"^[^\x00]*[^\x00\t\n\v\f\r ][^\x00]*$"


class SearchQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Blank is a 400: a search for nothing is a caller's mistake, and saying so helps more than [].
    q: StrictStr = Field(min_length=1, max_length=MAX_SEARCH_CHARS, pattern=NOT_BLANK)
    limit: int = Field(20, ge=1, le=100)
