"""The migrations as `supabase db push` applies them to a new hosted project: as `postgres`, which
is not a superuser there, one transaction per file, in order, onto a database laid out as
Supabase's is (its roles, the default privileges that grant every new object in `public` to the
API roles, an `extensions` schema, pg_net available but not enabled, and pg_net's own grants).
Then the RLS matrix runs again on that database. Also: a server without pg_net refuses the
migrations at once, and what pg_net lets any signed-in user read holds nothing of anyone's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devstack.migrate import MigrationFailed, apply_bootstrap, apply_migrations, migration_files
from devstack.postgres import LocalPostgres
from devstack.serving import free_port
from tests.integration.test_row_level_security import *  # noqa: F403  the RLS matrix, run again on this database
from tests.support.database import Role, insert_user
from tests.support.stack import scratch_dir

COMPAT_DATABASE = "supabase_compat"
REST_DOOR_FUNCTIONS = {
    "message_outcome", "conversation_history", "list_conversations", "chat_quota", "stop_reply", "reply_progress",
}
FRONTEND_FUNCTIONS = {  # what the chat page calls besides the tables
    "chat_models", "conversation_branch", "regenerate_message", "edit_message", "search_messages",
}


@dataclass(frozen=True)
class MigratedProject:
    url: str
    before: dict[str, Any]  # what the database looked like between bootstrap and migrations
    applied: list[str]


def _facts(conn: psycopg.Connection) -> dict[str, Any]:
    def one(query: str) -> Any:
        row = conn.execute(query).fetchone()
        return row[0] if row else None

    return {
        "postgres": conn.execute(
            "select rolsuper, rolbypassrls, rolcreaterole from pg_roles where rolname = 'postgres'"
        ).fetchone(),
        "net_schema": one("select count(*) from pg_namespace where nspname = 'net'"),
        "pg_net_available": one("select default_version from pg_available_extensions where name = 'pg_net'"),
        "pg_net_installed": one("select count(*) from pg_extension where extname = 'pg_net'"),
        "default_grants": sorted(conn.execute(
            "select d.defaclrole::regrole::text, d.defaclobjtype, a.grantee::regrole::text"
            "  from pg_default_acl d, aclexplode(d.defaclacl) a"
            " where d.defaclnamespace = 'public'::regnamespace and a.grantee <> 0"
            " group by 1, 2, 3"
        ).fetchall()),
    }


@pytest.fixture(scope="module")
def project(postgres_server: LocalPostgres) -> Iterator[MigratedProject]:
    """A fresh database: bootstrapped as Supabase's image is, then migrated as db push does."""
    server_url = postgres_server.superuser_url
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"drop database if exists {COMPAT_DATABASE} with (force)")
        conn.execute(f"create database {COMPAT_DATABASE}")
    url = server_url.rsplit("/", 1)[0] + f"/{COMPAT_DATABASE}"
    apply_bootstrap(url)
    with psycopg.connect(url) as conn:
        before = _facts(conn)
    applied = apply_migrations(url)
    yield MigratedProject(url, before, applied)
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"drop database {COMPAT_DATABASE} with (force)")


@pytest.fixture(scope="module")
def database_url(project: MigratedProject) -> str:
    """Every test here, the RLS matrix included, runs on the migrated project."""
    return project.url


def test_postgres_is_not_a_superuser_but_bypasses_rls(project: MigratedProject) -> None:
    assert project.before["postgres"] == (False, True, True)


def test_new_objects_in_public_are_granted_to_the_api_roles_by_default(project: MigratedProject) -> None:
    expected = {
        (owner, kind, grantee)
        for owner in ("postgres", "supabase_admin")
        for kind in ("r", "f", "S")
        for grantee in ("postgres", "anon", "authenticated", "service_role")
    }
    assert set(project.before["default_grants"]) == expected


def test_pg_net_is_available_but_not_enabled_before_the_migrations(project: MigratedProject) -> None:
    before = project.before
    assert (before["net_schema"], before["pg_net_installed"], before["pg_net_available"]) == (0, 0, "devstack")


def test_every_migration_applies_in_order_as_postgres(project: MigratedProject, db: psycopg.Connection) -> None:
    assert project.applied == [path.name for path in migration_files()]
    owners = db.execute(
        "select distinct r.rolname from pg_class c join pg_roles r on r.oid = c.relowner"
        " where c.relnamespace in ('public'::regnamespace, 'private'::regnamespace) and c.relkind in ('r', 'S', 'i')"
        " union select distinct r.rolname from pg_proc p join pg_roles r on r.oid = p.proowner"
        " where p.pronamespace in ('public'::regnamespace, 'private'::regnamespace)"
    ).fetchall()
    assert owners == [("postgres",)]


def test_net_comes_from_the_pg_net_extension(db: psycopg.Connection) -> None:
    row = db.execute(
        "select e.extname, e.extnamespace::regnamespace::text, n.nspowner::regrole::text"
        "  from pg_depend d join pg_extension e on e.oid = d.refobjid join pg_namespace n on n.oid = d.objid"
        " where d.classid = 'pg_namespace'::regclass and d.deptype = 'e' and n.nspname = 'net'"
    ).fetchone()
    assert row == ("pg_net", "extensions", "supabase_admin")  # owned by the superuser, not by postgres


@pytest.mark.parametrize("role", ["anon", "authenticated"])
def test_pg_net_grants_every_role_its_queue(db: psycopg.Connection, role: str) -> None:
    """pg_net's own grants, which postgres cannot take back: the queue is nobody's secret."""
    row = db.execute(
        "select has_table_privilege(%s, 'net.http_request_queue', 'select, insert, delete'),"
        " has_table_privilege(%s, 'net._http_response', 'select')",
        (role, role),
    ).fetchone()
    assert row == (True, True)


def test_the_api_roles_may_call_only_the_functions_meant_for_them(db: psycopg.Connection) -> None:
    """Default privileges grant every new function in public to anon and authenticated: each
    migration has to take them back, and this is where one that forgot would show."""
    rows = db.execute(
        "select p.proname, has_function_privilege('anon', p.oid, 'execute'),"
        " has_function_privilege('authenticated', p.oid, 'execute')"
        "  from pg_proc p where p.pronamespace in ('public'::regnamespace, 'private'::regnamespace)"
    ).fetchall()
    assert [name for name, anon, _ in rows if anon] == []
    assert {name for name, _, authenticated in rows if authenticated} == REST_DOOR_FUNCTIONS | FRONTEND_FUNCTIONS


def test_another_user_reading_the_webhook_queue_sees_no_message(db: psycopg.Connection, database_url: str) -> None:
    db.execute("select private.configure_message_webhook('http://127.0.0.1:9/hook', %s)", ("whsec_" + "A" * 44,))
    alice, bob = insert_user(db), insert_user(db)
    conversation = db.execute(
        "insert into public.conversations (user_id, title) values (%s, 'private') returning id::text", (alice,)
    ).fetchone()[0]
    secret_words = "my bank PIN is 4921"
    [(message_id,)] = Role(database_url, "authenticated", alice).execute(
        "insert into public.messages (conversation_id, content) values (%s, %s) returning id::text",
        (conversation, secret_words),
    )
    queue = Role(database_url, "authenticated", bob).execute(
        "select convert_from(body, 'UTF8'), headers::text from net.http_request_queue"
    )
    db.execute("delete from private.webhook_config")
    [(body, headers)] = queue  # bob can read it: pg_net's grants are what they are
    assert secret_words not in body and secret_words not in headers
    assert json.loads(body)["record"] == {"id": message_id, "conversation_id": conversation, "role": "user"}


def test_a_server_without_pg_net_refuses_the_migrations_at_once() -> None:
    """Loudly, at `db push` time, naming the file; never later at a user's first insert."""
    with scratch_dir("ai-chat-no-pg-net-") as folder:
        server = LocalPostgres(Path(folder) / "postgres" / "data", free_port(), with_pg_net=False)
        url = server.start()
        try:
            apply_bootstrap(url)
            with pytest.raises(MigrationFailed, match=r"20261125000300_message_webhook\.sql did not apply: .*pg_net"):
                apply_migrations(url)
            with psycopg.connect(url) as conn:
                applied = [row[0] for row in conn.execute(
                    "select name from supabase_migrations.schema_migrations order by version")]
                leftovers = conn.execute("select count(*) from pg_namespace where nspname in ('net', 'private')").fetchone()
        finally:
            server.stop()
    assert applied == ["chat_schema", "row_level_security"]
    assert leftovers == (0,)  # the failed file left nothing behind
