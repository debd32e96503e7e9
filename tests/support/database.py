"""The session's PostgreSQL, and arranging and reading rows in it directly (as the superuser, or
as one of Supabase's API roles with that role's JWT claims)."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

from devstack.migrate import prepare_database
from devstack.postgres import LocalPostgres
from devstack.quotas import GENEROUS, set_quota_defaults
from devstack.serving import free_port

USER_TABLES = "auth.users, public.conversations, public.messages, net.http_request_queue, net._http_response"


def start_migrated_postgres(folder: Path) -> LocalPostgres:
    """A PostgreSQL on a free port, bootstrapped and migrated as `make run` does, with usage
    limits far above what tests send (the tests of the limits set their own per user)."""
    postgres = LocalPostgres(folder / "postgres" / "data", free_port())
    prepare_database(postgres.start())
    set_quota_defaults(postgres.superuser_url, GENEROUS)
    return postgres


@contextlib.contextmanager
def separate_migrated_database(server_url: str, name: str) -> Iterator[str]:
    """A database of its own on the session's server, bootstrapped and migrated, for tests that no
    running service may touch (the session's service sweeps every stalled message it can see)."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"drop database if exists {name} with (force)")
        conn.execute(f"create database {name}")
    url = server_url.rsplit("/", 1)[0] + f"/{name}"
    prepare_database(url)
    set_quota_defaults(url, GENEROUS)
    yield url
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"drop database {name} with (force)")


class Role:
    """Runs SQL as one of Supabase's API roles with that role's JWT claims, as PostgREST does."""

    def __init__(self, database_url: str, role: str, user_id: str | None = None) -> None:
        self.database_url = database_url
        self.role = role
        self.user_id = user_id

    def execute(self, query: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        """Run one statement in its own transaction; raise the database's error as it is."""
        claims = {"role": self.role, **({"sub": self.user_id, "aud": "authenticated"} if self.user_id else {})}
        with psycopg.connect(self.database_url) as conn:
            conn.execute(f"set local role {self.role}")
            conn.execute("select set_config('request.jwt.claims', %s, true)", (json.dumps(claims),))
            cursor = conn.execute(query, params)  # type: ignore[arg-type]
            return cursor.fetchall() if cursor.description else []


def insert_user(conn: psycopg.Connection, email: str | None = None) -> str:
    user_id = str(uuid.uuid4())
    conn.execute(
        "insert into auth.users (id, aud, role, email) values (%s, 'authenticated', 'authenticated', %s)",
        (user_id, email or f"{user_id}@example.test"),
    )
    return user_id


def one_row(db: psycopg.Connection, query: str, params: tuple[object, ...] = ()) -> tuple[Any, ...]:
    row = db.execute(query, params).fetchone()
    assert row is not None
    return tuple(row)
