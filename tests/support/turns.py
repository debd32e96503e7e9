"""Conversations written turn by turn, directly in the database: a user's messages inserted as
that user (the API role with their JWT claims), answered by the service role through the
pipeline's own functions, so every trigger runs as it does in production."""

from __future__ import annotations

import json
from typing import Any

import psycopg

from tests.support.database import Role, insert_user


class Chat:
    """One user's conversation, with the webhook off (nothing is delivered)."""

    def __init__(self, db: psycopg.Connection, database_url: str) -> None:
        db.execute("delete from private.webhook_config")
        self.user_id = insert_user(db)
        self.user = Role(database_url, "authenticated", self.user_id)
        self.service = Role(database_url, "service_role")
        self.conversation = str(self.user.execute("insert into public.conversations default values returning id")[0][0])

    def send(self, content: str | None = None, **pointers: str) -> str:
        """A user message, with parent_id / edit_of / regenerates as given."""
        columns = {"conversation_id": self.conversation, **({"content": content} if content is not None else {}),
                   **pointers}
        names = ", ".join(columns)
        marks = ", ".join(["%s"] * len(columns))
        rows = self.user.execute(
            f"insert into public.messages ({names}) values ({marks}) returning id::text", tuple(columns.values())
        )
        return str(rows[0][0])

    def claim(self, message_id: str, budget: int = 6000, max_messages: int = 200) -> Any:
        return self.service.execute(
            "select public.claim_message_for_reply(%s, %s, 60, 5, %s)", (message_id, budget, max_messages)
        )[0][0]

    def answer(self, message_id: str, content: str) -> str:
        """Claim the message and complete it with `content`; the reply's id."""
        claim = self.claim(message_id)
        assert claim is not None and "waiting" not in claim, claim
        done = self.service.execute(
            "select public.complete_message_for_reply(%s, %s, %s)", (message_id, claim["claim_token"], content)
        )[0][0]
        return str(done["reply_id"])

    def turn(self, content: str, **pointers: str) -> str:
        """A user message answered with "re <content>"; the message's id."""
        message_id = self.send(content, **pointers)
        self.answer(message_id, f"re {content}")
        return message_id

    def branch(self, **arguments: object) -> Any:
        names = ", ".join(f"{name} => %s" for name in arguments)
        return self.user.execute(
            f"select public.conversation_branch(%s{', ' if names else ''}{names})",
            (self.conversation, *arguments.values()),
        )[0][0]


def refusal_code(error: psycopg.Error) -> str:
    """The code of a PostgREST-shaped refusal (SQLSTATE PGRST, the body's JSON in the message)."""
    assert error.sqlstate == "PGRST", error
    assert error.diag.message_primary is not None
    return str(json.loads(error.diag.message_primary)["code"])


def contents(messages: list[dict[str, Any]]) -> list[str]:
    return [message["content"] for message in messages]
