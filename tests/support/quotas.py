"""Helpers for the tests of the database's usage limits: a user's own PostgREST client (what a
frontend's supabase-js sends, as raw HTTP so the exact status and headers can be read) and the
operator's per-user overrides."""

from __future__ import annotations

import httpx
import psycopg
from psycopg import sql

from devstack.stack import LocalStack


def rest_as(stack: LocalStack, access_token: str | None) -> httpx.Client:
    """/rest/v1 with the anon key, as a signed-in user when a token is given."""
    assert stack.keys is not None
    headers = {"apikey": stack.keys.api_key("anon")}
    if access_token:
        headers["Authorization"] = f"Bearer {access_token}"
    return httpx.Client(base_url=f"{stack.api_url}/rest/v1", headers=headers, timeout=30)


def limit_user(db: psycopg.Connection, user_id: str, **limits: int) -> None:
    """What an operator does for one user: a row in private.user_quotas (null columns = default)."""
    columns = [sql.Identifier(name) for name in limits]
    db.execute(
        sql.SQL("insert into private.user_quotas (user_id, {}) values (%s, {})").format(
            sql.SQL(", ").join(columns), sql.SQL(", ").join(sql.Placeholder() * len(limits))
        ),
        (user_id, *limits.values()),
    )


def new_conversation(rest: httpx.Client, **fields: object) -> str:
    response = rest.post("/conversations", json=fields, headers={"Prefer": "return=representation"})
    assert response.status_code == 201, response.text
    return str(response.json()[0]["id"])


def insert_messages(rest: httpx.Client, conversation_id: str, contents: list[str]) -> httpx.Response:
    """One request: one row for one content, a JSON array (one statement) for several."""
    rows = [{"conversation_id": conversation_id, "content": content} for content in contents]
    return rest.post("/messages", json=rows[0] if len(rows) == 1 else rows)
