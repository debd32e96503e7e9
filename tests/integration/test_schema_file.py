"""supabase/schema.sql is what the migrations on disk produce, so a reader of it reads the current
schema: a migration added or changed without regenerating the file fails here."""

from __future__ import annotations

import difflib

from devstack.schema_dump import SCHEMA_FILE, dump_migrated_schema


def test_committed_schema_file_matches_the_migrations(database_url: str) -> None:
    committed = SCHEMA_FILE.read_text() if SCHEMA_FILE.exists() else ""
    current = dump_migrated_schema(database_url)
    if committed != current:
        diff = "".join(difflib.unified_diff(
            committed.splitlines(keepends=True), current.splitlines(keepends=True),
            fromfile="supabase/schema.sql (committed)", tofile="from supabase/migrations/", n=1,
        ))
        raise AssertionError(
            "supabase/schema.sql is out of date with supabase/migrations/: run `make schema`, "
            f"commit the file and bring docs/schema.md up to date.\n{diff[:4000]}"
        )
