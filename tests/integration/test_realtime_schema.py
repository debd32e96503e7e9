"""The local stand-in's `realtime` schema is no looser than a hosted project's: `postgres` (what
migrations run as) is not a member of supabase_realtime_admin, realtime.messages is partitioned
as Realtime creates it and has its columns, and a migration may manage policies on
realtime.messages (supautils' policy_grants, stood in by event triggers) but nothing else on it:
a migration that adds a column, an index or a trigger, or turns RLS off, fails here as it would
on `supabase db push`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from devstack.migrate import MigrationFailed, apply_migrations

# Realtime's tenant migrations, in order (squash 2026-04, binary payloads, broadcast storage).
HOSTED_COLUMNS = [
    ("topic", "text", "NO"),
    ("extension", "text", "NO"),
    ("payload", "jsonb", "YES"),
    ("event", "text", "YES"),
    ("private", "boolean", "YES"),
    ("updated_at", "timestamp without time zone", "NO"),
    ("inserted_at", "timestamp without time zone", "NO"),
    ("id", "uuid", "NO"),
    ("binary_payload", "bytea", "YES"),
    ("broadcasted_at", "timestamp without time zone", "YES"),
]
TEST_VERSION = "29991231000000"


def test_postgres_is_not_a_member_of_supabase_realtime_admin_and_owns_nothing_there(db: psycopg.Connection) -> None:
    assert db.execute("select pg_has_role('postgres', 'supabase_realtime_admin', 'member')").fetchone() == (False,)
    owners = db.execute(
        "select distinct relowner::regrole::text from pg_class where relnamespace = 'realtime'::regnamespace"
    ).fetchall()
    assert owners == [("supabase_realtime_admin",)]
    assert db.execute("select has_schema_privilege('postgres', 'realtime', 'CREATE')").fetchone() == (False,)


def test_realtime_messages_is_partitioned_by_day_as_realtime_creates_it(db: psycopg.Connection) -> None:
    assert db.execute(
        "select partstrat, pg_get_partkeydef('realtime.messages'::regclass) from pg_partitioned_table"
        " where partrelid = 'realtime.messages'::regclass"
    ).fetchone() == ("r", "RANGE (inserted_at)")
    columns = db.execute(
        "select column_name, data_type, is_nullable from information_schema.columns"
        " where table_schema = 'realtime' and table_name = 'messages' order by ordinal_position"
    ).fetchall()
    assert columns == HOSTED_COLUMNS
    partitions = {row[0] for row in db.execute(
        "select inhrelid::regclass::text from pg_inherits where inhparent = 'realtime.messages'::regclass"
    )}
    today = db.execute("select 'realtime.messages_' || to_char(current_date, 'YYYY_MM_DD')").fetchone()
    assert today is not None and {"realtime.messages_default", today[0]} <= partitions
    assert db.execute(
        "select relrowsecurity from pg_class where oid = 'realtime.messages'::regclass"
    ).fetchone() == (True,)


@pytest.fixture
def migrations_dir(tmp_path: Path, database_url: str) -> Iterator[Path]:
    """A folder for one test migration, applied as `supabase db push` would; forgotten afterwards."""
    yield tmp_path
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("delete from supabase_migrations.schema_migrations where version = %s", (TEST_VERSION,))
        conn.execute("drop policy if exists ops_test_policy on realtime.messages")


def migration(folder: Path, sql: str) -> Path:
    path = folder / f"{TEST_VERSION}_touch_realtime_messages.sql"
    path.write_text(sql)
    return path


def test_a_migration_may_manage_policies_on_realtime_messages(migrations_dir: Path, database_url: str) -> None:
    migration(migrations_dir, """
        create policy ops_test_policy on realtime.messages for select to authenticated using (false);
        alter policy ops_test_policy on realtime.messages using (realtime.topic() = 'nobody');
        drop policy ops_test_policy on realtime.messages;
        create policy ops_test_policy on realtime.messages for insert to authenticated with check (false);
    """)
    assert apply_migrations(database_url, migrations_dir) == [f"{TEST_VERSION}_touch_realtime_messages.sql"]
    with psycopg.connect(database_url) as conn:
        assert conn.execute(
            "select cmd from pg_policies where schemaname = 'realtime' and policyname = 'ops_test_policy'"
        ).fetchone() == ("INSERT",)
        assert conn.execute("select pg_has_role('postgres', 'supabase_realtime_admin', 'member')").fetchone() == (False,)


@pytest.mark.parametrize(
    ("sql", "error"),
    [
        pytest.param("alter table realtime.messages add column note text;", "must be owner of table messages",
                     id="a column"),
        pytest.param("create index on realtime.messages (topic);", "must be owner of table messages", id="an index"),
        pytest.param("alter table realtime.messages disable row level security;", "must be owner of table messages",
                     id="RLS off"),
        pytest.param(
            "create function public.ops_noop() returns trigger language plpgsql as $$ begin return new; end $$;"
            " create trigger ops_noop before insert on realtime.messages for each row execute function public.ops_noop();",
            # TRIGGER is granted on the table, but creating one reaches every partition, none of them granted.
            "permission denied for table messages_", id="a trigger"),
        pytest.param("create policy ops_test_policy on realtime.messages_default for select using (true);",
                     "must be owner of the table of policy", id="a policy on a partition"),
        pytest.param("create table realtime.ops_notes (id int);", "permission denied for schema realtime",
                     id="a table in the realtime schema"),
    ],
)
def test_a_migration_that_alters_realtime_messages_fails_as_on_a_hosted_project(
    migrations_dir: Path, database_url: str, sql: str, error: str
) -> None:
    migration(migrations_dir, sql)
    with pytest.raises(MigrationFailed) as failed:
        apply_migrations(database_url, migrations_dir)
    assert str(failed.value).startswith(f"{TEST_VERSION}_touch_realtime_messages.sql did not apply: {error}")
