"""Our migration's policy on realtime.messages: only a conversation's owner may receive on its
private channel `chat:<conversation_id>`, nobody but the service role may send there, and the
migration applies as a hosted project's `postgres` (no superuser) applies it."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest

from devstack.migrate import MIGRATIONS_DIR
from tests.support.database import insert_user

POLICY_MIGRATION = MIGRATIONS_DIR / "20261201200000_chat_channel_authorization.sql"


def probe(database_url: str, role: str, user_id: str | None, topic: str, extension: str = "broadcast") -> dict[str, bool]:
    """What Realtime asks on a private join and on a send, as `role` with the user's claims."""
    claims = json.dumps({"role": role, **({"sub": user_id} if user_id else {})})
    with psycopg.connect(database_url) as conn:
        probe_id = conn.execute("insert into realtime.messages (topic, extension) values (%s, %s) returning id",
                                (topic, extension)).fetchone()[0]  # type: ignore[index]
        conn.execute("select set_config('role', %s, true), set_config('request.jwt.claims', %s, true),"
                     " set_config('realtime.topic', %s, true)", (role, claims, topic))
        read = conn.execute("select exists(select 1 from realtime.messages where id = %s)", (probe_id,)).fetchone()
        try:
            with conn.transaction():
                conn.execute("insert into realtime.messages (topic, extension) values (%s, %s)", (topic, extension))
            write = True
        except psycopg.errors.InsufficientPrivilege:
            write = False
        conn.rollback()
    return {"read": bool(read and read[0]), "write": write}


@pytest.fixture
def owner_and_conversation(db: psycopg.Connection) -> tuple[str, str]:
    owner = insert_user(db)
    row = db.execute("insert into public.conversations (user_id) values (%s) returning id", (owner,)).fetchone()
    assert row is not None
    return owner, str(row[0])


@pytest.mark.parametrize(
    ("who", "topic", "extension", "expected"),
    [
        pytest.param("owner", "chat:{conversation}", "broadcast", {"read": True, "write": False}, id="owner-receives"),
        pytest.param("owner", "chat:{conversation}", "presence", {"read": True, "write": False}, id="owner-presence"),
        pytest.param("other", "chat:{conversation}", "broadcast", {"read": False, "write": False}, id="other-user"),
        pytest.param("anon", "chat:{conversation}", "broadcast", {"read": False, "write": False}, id="anon"),
        pytest.param("owner", "chat:not-a-uuid", "broadcast", {"read": False, "write": False}, id="malformed-topic"),
        pytest.param("owner", "{conversation}", "broadcast", {"read": False, "write": False}, id="another-topic"),
        pytest.param("service", "chat:{conversation}", "broadcast", {"read": True, "write": True}, id="service-role"),
    ],
)
def test_only_the_owner_receives_on_the_chat_channel(
    who: str, topic: str, extension: str, expected: dict[str, bool], database_url: str, db: psycopg.Connection,
    owner_and_conversation: tuple[str, str],
) -> None:
    owner, conversation = owner_and_conversation
    role, user_id = {
        "owner": ("authenticated", owner), "other": ("authenticated", insert_user(db)),
        "anon": ("anon", None), "service": ("service_role", None),
    }[who]
    assert probe(database_url, role, user_id, topic.format(conversation=conversation), extension) == expected


def test_the_policy_applies_as_a_non_superuser_member_of_the_realtime_admin(database_url: str) -> None:
    """On a hosted project `postgres` is no superuser; realtime.messages belongs to
    supabase_realtime_admin, of which postgres is a member. The same holds here."""
    role = f"hosted_postgres_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url) as conn:
        conn.execute(f"create role {role} nosuperuser nocreaterole")
        conn.execute(f"grant supabase_realtime_admin to {role}")
        conn.execute(f"grant usage on schema public, auth, realtime to {role}")
        conn.execute("drop policy chat_channel_owner_receives on realtime.messages")
        conn.execute(f"set local role {role}")
        assert conn.execute("select rolsuper from pg_roles where rolname = current_user").fetchone() == (False,)
        conn.execute(POLICY_MIGRATION.read_text())
        policies = conn.execute("select policyname from pg_policies where tablename = 'messages'"
                                " and schemaname = 'realtime'").fetchall()
        conn.rollback()
    assert policies == [("chat_channel_owner_receives",)]
