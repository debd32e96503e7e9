"""Apply the Supabase bootstrap and then the project's migrations to a database.

The bootstrap stands in for what Supabase's image already has; the migrations are the same
files `supabase db push` applies to a real project, recorded in the same table the CLI uses,
so each file runs once and in order.
"""

from __future__ import annotations

from pathlib import Path

import psycopg

REPO_ROOT = Path(__file__).resolve().parent.parent
BOOTSTRAP_SQL = Path(__file__).resolve().parent / "sql" / "supabase_bootstrap.sql"
# What Supabase Realtime installs in a project (the realtime schema); after the image's extras.
REALTIME_BOOTSTRAP_SQL = Path(__file__).resolve().parent / "sql" / "realtime_bootstrap.sql"
MIGRATIONS_DIR = REPO_ROOT / "supabase" / "migrations"

HISTORY_TABLE_SQL = """
create schema if not exists supabase_migrations;
create table if not exists supabase_migrations.schema_migrations (
  version text primary key,
  statements text[],
  name text
);
"""


def migration_files(directory: Path = MIGRATIONS_DIR) -> list[Path]:
    """Migration files in the order the Supabase CLI applies them: by their timestamp prefix."""
    return sorted(directory.glob("*.sql"))


def apply_bootstrap(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(BOOTSTRAP_SQL.read_text())
        conn.execute(REALTIME_BOOTSTRAP_SQL.read_text())


def apply_migrations(database_url: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply each migration not yet recorded, each in its own transaction. Returns those applied."""
    applied: list[str] = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(HISTORY_TABLE_SQL)
        done = {row[0] for row in conn.execute("select version from supabase_migrations.schema_migrations")}
        for path in migration_files(directory):
            version, _, name = path.stem.partition("_")
            if version in done:
                continue
            with conn.transaction():
                conn.execute(path.read_text())
                conn.execute(
                    "insert into supabase_migrations.schema_migrations (version, name) values (%s, %s)",
                    (version, name),
                )
            applied.append(path.name)
    return applied


def prepare_database(database_url: str) -> list[str]:
    """Bootstrap (idempotent) then migrate: what a fresh local database needs."""
    apply_bootstrap(database_url)
    return apply_migrations(database_url)
