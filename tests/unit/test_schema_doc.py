"""docs/schema.md cannot go stale silently: every table, policy, trigger and function of
supabase/schema.sql is in it, and each function's callers and defining migration are what the
files say. Files only, no database (tests/integration/test_schema_file.py keeps the dump current)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from devstack.schema_doc import DOC_FILE, TODO_JOB, defined_in, refreshed_doc, schema_functions
from devstack.schema_dump import SCHEMA_FILE

SCHEMA_SQL = SCHEMA_FILE.read_text()
DOC = DOC_FILE.read_text()
STALE = "docs/schema.md is out of date with supabase/schema.sql: run `make schema` and write what it leaves as TODO"


def _named(pattern: str) -> list[str]:
    return sorted(set(re.findall(pattern, SCHEMA_SQL, re.MULTILINE)))


@pytest.mark.parametrize(
    ("kind", "pattern"),
    [
        pytest.param("function", r"^CREATE FUNCTION (\w+\.\w+)\(", id="functions"),
        pytest.param("table", r"^CREATE TABLE (\w+\.\w+) ", id="tables"),
        pytest.param("policy", r"^CREATE POLICY (\w+) ", id="policies"),
        pytest.param("trigger", r"^CREATE TRIGGER (\w+) ", id="triggers"),
    ],
)
def test_every_object_of_the_schema_file_is_documented(kind: str, pattern: str) -> None:
    names = _named(pattern)
    assert names, f"no {kind} found in supabase/schema.sql: has its format changed?"
    missing = [name for name in names if f"`{name}" not in DOC]
    assert not missing, f"{STALE}; undocumented {kind}s: {missing}"


def test_function_tables_show_current_grants_and_defining_migrations() -> None:
    assert refreshed_doc(DOC, SCHEMA_SQL, defined_in()) == DOC, STALE


def test_every_function_has_its_job_written() -> None:
    assert TODO_JOB not in DOC, STALE


def test_every_function_of_the_schema_file_has_a_defining_migration() -> None:
    undefined = [f.name for f in schema_functions(SCHEMA_SQL, defined_in()) if f.defined_in == "?"]
    assert not undefined


@pytest.mark.parametrize(
    ("function", "migration"),
    [
        pytest.param("public.fetch_message_context", "20261207000000_branches_titles_search.sql", id="defined-four-times"),
        pytest.param("private.queue_message_webhook", "20261201000200_webhook_body_ids_only.sql", id="replaced-once"),
        pytest.param("public.settled_messages", "20261201300000_streaming_replies.sql", id="replaced-in-a-later-feature"),
        pytest.param("private.hmac_sha256", "20261125000300_message_webhook.sql", id="never-replaced"),
    ],
)
def test_defined_in_is_the_latest_create_of_a_function(function: str, migration: str) -> None:
    assert defined_in()[function] == migration


def test_defined_in_reads_create_or_replace_and_skips_comments(tmp_path: Path) -> None:
    (tmp_path / "20260101000000_first.sql").write_text(
        "create function public.a() returns int language sql as $$ select 1 $$;\n"
        "CREATE FUNCTION private.b() returns int language sql as $$ select 1 $$;\n"
    )
    (tmp_path / "20260102000000_second.sql").write_text(
        "-- create or replace function private.b() is not needed here\n"
        "create or replace function\n  public.a() returns int language sql as $$ select 2 $$;\n"
    )
    assert defined_in(tmp_path) == {
        "public.a": "20260102000000_second.sql",
        "private.b": "20260101000000_first.sql",
    }
