"""Users sending messages as the real ones do: through the gateway with supabase-py as a signed-up
user (what supabase-js does), or straight into Postgres as `authenticated` with the user's JWT
claims (what PostgREST does). Both fire the real trigger and the pg_net stand-in."""

from __future__ import annotations

import json
import uuid

import httpx
import psycopg
from supabase import Client, ClientOptions, create_client

from devstack.stack import LocalStack
from tests.support.database import insert_user


class GatewayUser:
    """A user signed up through supabase-py against the local gateway."""

    def __init__(self, stack: LocalStack) -> None:
        assert stack.keys is not None
        self.client: Client = create_client(
            stack.api_url, stack.keys.api_key("anon"),
            options=ClientOptions(auto_refresh_token=False, persist_session=False),
        )
        response = self.client.auth.sign_up({"email": f"{uuid.uuid4()}@example.test", "password": "correct horse battery"})
        assert response.user is not None and response.session is not None
        self.user_id = response.user.id
        self.access_token = response.session.access_token

    def new_conversation(self, **fields: str) -> str:
        return str(self.client.table("conversations").insert(fields).execute().data[0]["id"])

    def send(self, conversation_id: str, *contents: str) -> list[str]:
        """One insert of all `contents` (one transaction, one webhook each); their ids."""
        rows = [{"conversation_id": conversation_id, "content": content} for content in contents]
        return [str(row["id"]) for row in self.client.table("messages").insert(rows).execute().data]

    def api(self, base_url: str) -> httpx.Client:
        return httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {self.access_token}"}, timeout=30)


class DirectUser:
    """A user whose statements run in Postgres as `authenticated` with its claims, under RLS."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        with psycopg.connect(database_url, autocommit=True) as conn:
            self.user_id = insert_user(conn)

    def new_conversation(self, title: str | None = None) -> str:
        row = self._as_user("insert into public.conversations (title) values (%s) returning id", (title,))
        return str(row[0][0])

    def send(self, conversation_id: str, *contents: str, connect_timeout: float = 5) -> list[str]:
        """One transaction inserting all `contents`; their ids once it has committed."""
        rows = self._as_user(
            "insert into public.messages (conversation_id, content) select %s, c from unnest(%s::text[]) as c returning id",
            (conversation_id, list(contents)),
            connect_timeout=connect_timeout,
        )
        return [str(row[0]) for row in rows]

    def _as_user(self, query: str, params: tuple[object, ...], connect_timeout: float = 5) -> list[tuple[object, ...]]:
        claims = json.dumps({"role": "authenticated", "sub": self.user_id, "aud": "authenticated"})
        with psycopg.connect(self.database_url, connect_timeout=connect_timeout) as conn:
            conn.execute("set local role authenticated")
            conn.execute("select set_config('request.jwt.claims', %s, true)", (claims,))
            rows = conn.execute(query, params).fetchall()  # type: ignore[arg-type]
        return rows  # the `with` block committed: the rows exist
