"""A conversation's total order (seq) and one-at-a-time answering, at the SQL functions the
service calls: a batch keeps its order, a message waits while an earlier one is unanswered, and
the one who settles it is told which to answer next. (Releasing by a caller-chosen token:
test_claim_timeout.py.)"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devstack.migrate import apply_bootstrap, apply_migrations, migration_files
from devstack.stack import LocalStack
from tests.support.database import Role
from tests.support.quotas import insert_messages, new_conversation, rest_as
from tests.support.users import SignedUpUser

WORDS = ["one", "two", "three", "four", "five", "six"]


@pytest.fixture
def service_role(database_url: str) -> Role:
    return Role(database_url, "service_role")


def claim(service_role: Role, message_id: str, token: str | None = None, budget: int = 6000) -> Any:
    return service_role.execute(
        "select public.claim_message_for_reply(%s, %s, 60, 5, 200, %s)", (message_id, budget, token)
    )[0][0]


def complete(service_role: Role, message_id: str, token: str, content: str) -> Any:
    return service_role.execute(
        "select public.complete_message_for_reply(%s, %s, %s)", (message_id, token, content)
    )[0][0]


@pytest.fixture
def batch(stack: LocalStack, alice: SignedUpUser, db: psycopg.Connection) -> list[str]:
    """one..six inserted in ONE request by the user (one statement, one created_at), webhook off."""
    db.execute("delete from private.webhook_config")
    rest = rest_as(stack, alice.access_token)
    conversation = new_conversation(rest)
    response = insert_messages(rest, conversation, WORDS)
    assert response.status_code == 201
    rows = db.execute("select id::text, content from public.messages where conversation_id = %s", (conversation,))
    by_content = {content: message_id for message_id, content in rows}
    return [by_content[word] for word in WORDS]


def test_a_batch_keeps_its_order_in_seq_and_history(
    stack: LocalStack, alice: SignedUpUser, db: psycopg.Connection, batch: list[str]
) -> None:
    rows = db.execute("select content, seq, created_at from public.messages order by seq").fetchall()
    assert [content for content, _, _ in rows] == WORDS
    assert all(seq % 2 == 0 for _, seq, _ in rows)  # user messages are even; a reply is its message's + 1
    assert len({created for _, _, created in rows}) == 1  # one statement: created_at cannot tell them apart
    conversation = db.execute("select conversation_id::text from public.messages limit 1").fetchone()[0]
    page = rest_as(stack, alice.access_token).post(
        "/rpc/conversation_history", json={"conversation_id": conversation, "page_size": 4}
    ).json()
    assert [m["content"] for m in page["messages"]] == WORDS[2:]
    older = rest_as(stack, alice.access_token).post(
        "/rpc/conversation_history", json={"conversation_id": conversation, "page_size": 4, "before": page["next_before"]}
    ).json()
    assert ([m["content"] for m in older["messages"]], older["next_before"]) == (WORDS[:2], None)


def test_later_messages_wait_and_each_settlement_hands_on_the_next(service_role: Role, batch: list[str]) -> None:
    first, second, third = batch[:3]
    assert claim(service_role, second) == {"waiting": True, "message_id": second, "waiting_for": first}

    token = str(uuid.uuid4())
    claimed = claim(service_role, first, token)
    assert claimed["claim_token"] == token
    assert claimed["context"] == [{"role": "user", "content": "one"}]
    assert complete(service_role, first, token, "reply to one")["next_message_id"] == second

    claimed = claim(service_role, second)
    assert claimed["context"] == [
        {"role": "user", "content": "one"}, {"role": "assistant", "content": "reply to one"},
        {"role": "user", "content": "two"},
    ]
    failed = service_role.execute("select public.fail_message(%s, %s, 'model down')", (second, claimed["claim_token"]))
    assert failed[0][0] == {"failed": True, "next_message_id": third}
    context = claim(service_role, third)["context"]
    assert [item["content"] for item in context] == ["one", "reply to one", "three"]  # failed ones are left out


def test_a_reply_sorts_right_after_its_message_whatever_order_replies_are_written(
    db: psycopg.Connection, service_role: Role, batch: list[str]
) -> None:
    first = batch[0]
    token = claim(service_role, first)["claim_token"]
    complete(service_role, first, token, "late reply")
    rows = db.execute("select role, content from public.messages order by seq limit 3").fetchall()
    assert rows == [("user", "one"), ("assistant", "late reply"), ("user", "two")]


def test_other_conversations_do_not_wait(db: psycopg.Connection, service_role: Role, batch: list[str]) -> None:
    user = db.execute("select user_id from public.messages limit 1").fetchone()[0]
    other = db.execute("insert into public.conversations (user_id) values (%s) returning id", (user,)).fetchone()[0]
    lone = db.execute(
        "insert into public.messages (conversation_id, user_id, content) values (%s, %s, 'elsewhere') returning id::text",
        (other, user),
    ).fetchone()[0]
    assert claim(service_role, lone)["context"] == [{"role": "user", "content": "elsewhere"}]


def test_system_prompt_counts_inside_the_budget_and_is_cut_to_fit(db: psycopg.Connection, service_role: Role) -> None:
    db.execute("delete from private.webhook_config")
    user = db.execute("insert into auth.users (id, aud, role, email) values (gen_random_uuid(), 'authenticated', "
                      "'authenticated', gen_random_uuid() || '@example.test') returning id").fetchone()[0]
    conversation = db.execute(
        "insert into public.conversations (user_id, system_prompt) values (%s, %s) returning id", (user, "s" * 8000)
    ).fetchone()[0]
    message = db.execute(
        "insert into public.messages (conversation_id, user_id, content) values (%s, %s, %s) returning id::text",
        (conversation, user, "q" * 396),  # 396 / 4 + 4 = 103 tokens
    ).fetchone()[0]
    claimed = claim(service_role, message, budget=203)
    assert claimed["system_prompt_trimmed"] is True
    assert claimed["system_prompt"] == "s" * ((203 - 103 - 4) * 4)
    assert claimed["context"] == [{"role": "user", "content": "q" * 396}]


ORDER_MIGRATION = "20261201100100"


@pytest.fixture
def fresh_database(database_url: str) -> Iterator[str]:
    name = "order_backfill_check"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"drop database if exists {name}")
        conn.execute(f"create database {name}")
    yield database_url.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"drop database {name} with (force)")


def test_existing_messages_are_numbered_by_the_migration_in_their_old_order(
    fresh_database: str, tmp_path: Path
) -> None:
    """Backfill: a project's rows from before, once `supabase db push` adds seq."""
    for path in migration_files():
        if path.name < ORDER_MIGRATION:
            shutil.copy(path, tmp_path / path.name)
    apply_bootstrap(fresh_database)
    apply_migrations(fresh_database, tmp_path)
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        user = conn.execute("insert into auth.users (id, aud, role, email) values (gen_random_uuid(), 'authenticated',"
                            " 'authenticated', 'old@example.test') returning id").fetchone()[0]
        conversation = conn.execute("insert into public.conversations (user_id) values (%s) returning id",
                                    (user,)).fetchone()[0]
        for age, word in ((10, "first"), (5, "second")):
            message = conn.execute(
                "insert into public.messages (conversation_id, user_id, content, created_at, status) "
                "values (%s, %s, %s, now() - make_interval(secs => %s), 'done') returning id",
                (conversation, user, word, age)).fetchone()[0]
            conn.execute("insert into public.messages (conversation_id, user_id, role, content, status, reply_to) "
                         "values (%s, %s, 'assistant', %s, 'done', %s)", (conversation, user, f"re {word}", message))
        applied = apply_migrations(fresh_database)
        assert applied[0].startswith(ORDER_MIGRATION)
        rows = conn.execute("select content, seq from public.messages order by seq").fetchall()
        assert rows == [("first", 2), ("re first", 3), ("second", 4), ("re second", 5)]
        newer = conn.execute("insert into public.messages (conversation_id, user_id, content) values (%s, %s, 'new')"
                             " returning seq", (conversation, user)).fetchone()[0]
        assert newer == 6  # the sequence continues after the numbered rows
