"""Apply the Supabase bootstrap and then the project's migrations to a database.

The bootstrap stands in for what Supabase's image already has and runs as the server's
superuser. The migrations are the same files `supabase db push` applies to a real project and
run as it runs them: as `postgres`, which is not a superuser there (nor here), one transaction per
file, in order, recorded in the same table the CLI uses so each file runs once.
"""

from __future__ import annotations

from pathlib import Path

import psycopg

REPO_ROOT = Path(__file__).resolve().parent.parent
BOOTSTRAP_DIR = Path(__file__).resolve().parent / "sql" / "bootstrap"
MIGRATIONS_DIR = REPO_ROOT / "supabase" / "migrations"
MIGRATION_ROLE = "postgres"


class MigrationFailed(RuntimeError):
    """A migration file did not apply; nothing of it was kept. The message names the file."""

HISTORY_TABLE_SQL = """
create schema if not exists supabase_migrations;
create table if not exists supabase_migrations.schema_migrations (
  version text primary key,
  statements text[],
  name text
);
"""


def bootstrap_files(directory: Path = BOOTSTRAP_DIR) -> list[Path]:
    """The bootstrap's files in the order they run: by name (10_roles.sql, 20_auth.sql, ...)."""
    return sorted(directory.glob("*.sql"))


def migration_files(directory: Path = MIGRATIONS_DIR) -> list[Path]:
    """Migration files in the order the Supabase CLI applies them: by their timestamp prefix."""
    return sorted(directory.glob("*.sql"))


def apply_bootstrap(superuser_url: str) -> None:
    """Apply every bootstrap file as the superuser (idempotent: a restarted stack applies it again)."""
    with psycopg.connect(superuser_url, autocommit=True) as conn:
        for path in bootstrap_files():
            conn.execute(path.read_text())


def apply_migrations(database_url: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply each migration not yet recorded, each in its own transaction, as `postgres`.
    Returns those applied. The connection may log in as a superuser (the stack's own server) and
    drops to `postgres` before anything runs, so privileges are checked as on a hosted project."""
    applied: list[str] = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"set role {MIGRATION_ROLE}")
        conn.execute(HISTORY_TABLE_SQL)
        done = {row[0] for row in conn.execute("select version from supabase_migrations.schema_migrations")}
        for path in migration_files(directory):
            version, _, name = path.stem.partition("_")
            if version in done:
                continue
            try:
                with conn.transaction():
                    conn.execute(path.read_text())
                    conn.execute(
                        "insert into supabase_migrations.schema_migrations (version, name) values (%s, %s)",
                        (version, name),
                    )
            except psycopg.Error as error:
                raise MigrationFailed(f"{path.name} did not apply: {error}") from error
            applied.append(path.name)
    return applied


def prepare_database(superuser_url: str) -> list[str]:
    """Bootstrap (idempotent) then migrate: what a fresh local database needs."""
    apply_bootstrap(superuser_url)
    return apply_migrations(superuser_url)
