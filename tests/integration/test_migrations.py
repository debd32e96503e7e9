"""The migrations apply to an empty database, record themselves as the Supabase CLI does, and
apply nothing twice; the SQL HMAC matches the RFC 4231 known answers."""

from __future__ import annotations

import psycopg
import pytest

from devstack.migrate import apply_bootstrap, apply_migrations, migration_files


@pytest.fixture
def empty_database(database_url: str) -> str:
    """A brand-new database on the session's server, dropped afterwards."""
    name = "migration_check"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"drop database if exists {name}")
        conn.execute(f"create database {name}")
    yield database_url.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"drop database {name} with (force)")


def test_migrations_apply_cleanly_to_an_empty_database_once(empty_database: str) -> None:
    apply_bootstrap(empty_database)
    applied = apply_migrations(empty_database)
    assert applied == [path.name for path in migration_files()]
    assert apply_migrations(empty_database) == []
    with psycopg.connect(empty_database) as conn:
        versions = [row[0] for row in conn.execute("select version from supabase_migrations.schema_migrations")]
    assert len(versions) == len(applied)


def test_migration_files_are_timestamped_for_supabase_db_push() -> None:
    for path in migration_files():
        version, _, name = path.stem.partition("_")
        assert len(version) == 14 and version.isdigit() and name, path.name


def test_bootstrap_is_idempotent(database_url: str) -> None:
    apply_bootstrap(database_url)
    apply_bootstrap(database_url)


@pytest.mark.parametrize(
    ("key_hex", "message", "expected"),
    [
        ("0b" * 20, b"Hi There", "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
        ("4a656665", b"what do ya want for nothing?", "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
        ("aa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First",
         "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
    ],
)
def test_sql_hmac_matches_rfc_4231(db: psycopg.Connection, key_hex: str, message: bytes, expected: str) -> None:
    row = db.execute(
        "select encode(private.hmac_sha256(decode(%s, 'hex'), %s), 'hex')", (key_hex, message)
    ).fetchone()
    assert row == (expected,)


def test_both_tables_are_published_to_realtime(db: psycopg.Connection) -> None:
    rows = db.execute(
        "select tablename from pg_publication_tables where pubname = 'supabase_realtime' order by 1"
    ).fetchall()
    assert rows == [("conversations",), ("messages",)]


def test_sql_signature_matches_standard_webhooks_known_answer(db: psycopg.Connection) -> None:
    """The reference vector from the Standard Webhooks specification."""
    row = db.execute(
        "select encode(private.hmac_sha256(decode('MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'base64'),"
        " convert_to(%s, 'UTF8')), 'base64')",
        ('msg_p5jXN8AQM9LWM0D4loKWxJek.1614265330.{"test": 2432232314}',),
    ).fetchone()
    assert row == ("g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",)
