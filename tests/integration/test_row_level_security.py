"""The RLS matrix: who may select, insert, update and delete what, as the real API roles with
real JWT claims. Every forbidden case is tried, and checked to have changed nothing."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg import errors

from tests.support.database import Role, insert_user


@pytest.fixture
def world(db: psycopg.Connection, database_url: str) -> dict[str, object]:
    """User A with a conversation and a message; user B with nothing; anon; the service role."""
    a, b = insert_user(db), insert_user(db)
    conversation = db.execute(
        "insert into public.conversations (user_id, title) values (%s, 'A''s chat') returning id", (a,)
    ).fetchone()[0]
    message = db.execute(
        "insert into public.messages (conversation_id, user_id, content) values (%s, %s, 'hello') returning id",
        (conversation, a),
    ).fetchone()[0]
    return {
        "a": Role(database_url, "authenticated", a),
        "b": Role(database_url, "authenticated", b),
        "anon": Role(database_url, "anon"),
        "service": Role(database_url, "service_role"),
        "a_id": a,
        "b_id": b,
        "conversation": str(conversation),
        "message": str(message),
    }


def count(db: psycopg.Connection, table: str) -> int:
    return int(db.execute(f"select count(*) from public.{table}").fetchone()[0])


def test_owner_reads_own_conversation_and_messages(world: dict) -> None:
    assert world["a"].execute("select title from public.conversations") == [("A's chat",)]
    assert world["a"].execute("select content from public.messages") == [("hello",)]


def test_other_user_sees_nothing(world: dict) -> None:
    assert world["b"].execute("select * from public.conversations") == []
    assert world["b"].execute("select * from public.messages") == []


@pytest.mark.parametrize("table", ["conversations", "messages"])
def test_anon_cannot_read(world: dict, table: str) -> None:
    with pytest.raises(errors.InsufficientPrivilege):
        world["anon"].execute(f"select * from public.{table}")


def test_service_role_reads_everything(world: dict) -> None:
    assert len(world["service"].execute("select * from public.messages")) == 1
    assert len(world["service"].execute("select * from public.conversations")) == 1


def test_user_creates_conversation_owned_by_default(world: dict) -> None:
    rows = world["b"].execute("insert into public.conversations (title) values ('mine') returning user_id")
    assert str(rows[0][0]) == world["b_id"]


def test_user_cannot_create_conversation_for_someone_else(world: dict, db: psycopg.Connection) -> None:
    with pytest.raises(errors.InsufficientPrivilege, match="row-level security"):
        world["b"].execute("insert into public.conversations (user_id, title) values (%s, 'x')", (world["a_id"],))
    assert count(db, "conversations") == 1


def test_user_inserts_message_into_own_conversation(world: dict) -> None:
    rows = world["a"].execute(
        "insert into public.messages (conversation_id, content) values (%s, 'again') returning user_id, role, status",
        (world["conversation"],),
    )
    assert [(str(rows[0][0]), rows[0][1], rows[0][2])] == [(world["a_id"], "user", "pending")]


def test_user_cannot_insert_into_another_users_conversation(world: dict, db: psycopg.Connection) -> None:
    with pytest.raises(errors.InsufficientPrivilege, match="row-level security"):
        world["b"].execute(
            "insert into public.messages (conversation_id, content) values (%s, 'intrusion')", (world["conversation"],)
        )
    assert count(db, "messages") == 1


def test_user_cannot_insert_message_as_someone_else(world: dict, db: psycopg.Connection) -> None:
    with pytest.raises(errors.InsufficientPrivilege, match="row-level security"):
        world["a"].execute(
            "insert into public.messages (conversation_id, user_id, content) values (%s, %s, 'spoof')",
            (world["conversation"], world["b_id"]),
        )
    assert count(db, "messages") == 1


def test_user_cannot_insert_assistant_rows(world: dict, db: psycopg.Connection) -> None:
    with pytest.raises(errors.InsufficientPrivilege):
        world["a"].execute(
            "insert into public.messages (conversation_id, role, content) values (%s, 'assistant', 'fake reply')",
            (world["conversation"],),
        )
    assert count(db, "messages") == 1


@pytest.mark.parametrize(
    ("column", "value"),
    [("status", "done"), ("reply_to", None), ("error", "x"), ("attempts", 9), ("lease_expires_at", "2000-01-01")],
)
def test_user_cannot_set_pipeline_columns_on_insert(world: dict, db: psycopg.Connection, column: str, value: object) -> None:
    value = world["message"] if column == "reply_to" else value
    with pytest.raises(errors.InsufficientPrivilege):
        world["a"].execute(
            f"insert into public.messages (conversation_id, content, {column}) values (%s, 'x', %s)",
            (world["conversation"], value),
        )
    assert count(db, "messages") == 1


@pytest.mark.parametrize("content", ["", "x" * 32001])
def test_message_content_length_is_limited(world: dict, db: psycopg.Connection, content: str) -> None:
    with pytest.raises(errors.CheckViolation):
        world["a"].execute(
            "insert into public.messages (conversation_id, content) values (%s, %s)", (world["conversation"], content)
        )
    assert count(db, "messages") == 1


@pytest.mark.parametrize("assignment", [
    "status = 'done'", "reply_to = id", "content = 'edited'", "error = 'x'",
    "parent_id = null", "edit_of = id", "regenerates = id",
])
def test_user_cannot_update_messages(world: dict, db: psycopg.Connection, assignment: str) -> None:
    with pytest.raises(errors.InsufficientPrivilege):
        world["a"].execute(f"update public.messages set {assignment}")
    assert db.execute("select status, content, error from public.messages").fetchall() == [("pending", "hello", None)]


def test_user_cannot_delete_messages(world: dict, db: psycopg.Connection) -> None:
    with pytest.raises(errors.InsufficientPrivilege):
        world["a"].execute("delete from public.messages")
    assert count(db, "messages") == 1


def test_owner_renames_own_conversation(world: dict, db: psycopg.Connection) -> None:
    world["a"].execute("update public.conversations set title = 'renamed'")
    assert db.execute("select title from public.conversations").fetchone()[0] == "renamed"


def test_user_cannot_give_conversation_away(world: dict) -> None:
    with pytest.raises(errors.InsufficientPrivilege):
        world["a"].execute("update public.conversations set user_id = %s", (world["b_id"],))


def test_other_user_updates_and_deletes_nothing(world: dict, db: psycopg.Connection) -> None:
    assert world["b"].execute("update public.conversations set title = 'hijacked' returning id") == []
    assert world["b"].execute("delete from public.conversations returning id") == []
    assert db.execute("select title from public.conversations").fetchone()[0] == "A's chat"


@pytest.mark.parametrize("statement", [
    "insert into public.conversations (title) values ('x')",
    "update public.conversations set title = 'x'",
    "delete from public.conversations",
    "insert into public.messages (conversation_id, content) values ('{conversation}', 'x')",
    "delete from public.messages",
])
def test_anon_can_do_nothing(world: dict, db: psycopg.Connection, statement: str) -> None:
    with pytest.raises(errors.InsufficientPrivilege):
        world["anon"].execute(statement.format(conversation=world["conversation"]))
    assert (count(db, "conversations"), count(db, "messages")) == (1, 1)


def test_owner_deletes_conversation_and_its_messages(world: dict, db: psycopg.Connection) -> None:
    world["a"].execute("delete from public.conversations")
    assert (count(db, "conversations"), count(db, "messages")) == (0, 0)


def test_service_role_writes_assistant_rows_and_status(world: dict, db: psycopg.Connection) -> None:
    world["service"].execute(
        "insert into public.messages (conversation_id, user_id, role, content, status, reply_to)"
        " values (%s, %s, 'assistant', 'hi', 'done', %s)",
        (world["conversation"], world["a_id"], world["message"]),
    )
    world["service"].execute("update public.messages set status = 'done' where id = %s", (world["message"],))
    assert count(db, "messages") == 2


@pytest.mark.parametrize("function", [
    "public.claim_message('{message}')",
    "public.fetch_message_context('{message}', 100)",
    "public.complete_message_for_reply('{message}', gen_random_uuid(), 'x')",
    "public.fail_message('{message}', gen_random_uuid(), 'x')",
    "public.release_message('{message}', gen_random_uuid())",
    "public.list_stalled_messages()",
])
@pytest.mark.parametrize("who", ["a", "anon"])
def test_pipeline_functions_are_for_the_service_only(world: dict, function: str, who: str) -> None:
    with pytest.raises(errors.InsufficientPrivilege):
        world[who].execute("select " + function.format(message=world["message"]))


@pytest.mark.parametrize("who", ["a", "anon"])
def test_users_cannot_read_webhook_secret(world: dict, who: str) -> None:
    with pytest.raises(errors.InsufficientPrivilege):
        world[who].execute("select secret from private.webhook_config")


def test_second_reply_to_same_message_is_refused(world: dict) -> None:
    insert = (
        "insert into public.messages (conversation_id, user_id, role, content, status, reply_to)"
        " values (%s, %s, 'assistant', 'hi', 'done', %s)"
    )
    args = (world["conversation"], world["a_id"], world["message"])
    world["service"].execute(insert, args)
    with pytest.raises(errors.UniqueViolation):
        world["service"].execute(insert, args)


def test_unknown_conversation_is_refused(world: dict) -> None:
    with pytest.raises((errors.InsufficientPrivilege, errors.ForeignKeyViolation)):
        world["a"].execute(
            "insert into public.messages (conversation_id, content) values (%s, 'x')", (str(uuid.uuid4()),)
        )


@pytest.mark.parametrize("statement", [
    "insert into public.conversations (title, title_requested_at) values ('x', now())",
    "update public.conversations set title_requested_at = now()",
])
def test_user_cannot_mark_a_title_requested(world: dict, db: psycopg.Connection, statement: str) -> None:
    with pytest.raises(errors.InsufficientPrivilege):
        world["a"].execute(statement)
    assert db.execute("select title_requested_at from public.conversations").fetchall() == [(None,)]


@pytest.mark.parametrize("function", [
    "public.regenerate_message('{message}')",
    "public.edit_message('{message}', 'x')",
    "public.conversation_branch('{conversation}')",
    "public.search_messages('hello')",
    "public.claim_conversation_title('{conversation}')",
    "public.set_conversation_title('{conversation}', 'x', 1)",
])
def test_anon_calls_none_of_the_branch_title_and_search_functions(world: dict, function: str) -> None:
    with pytest.raises(errors.InsufficientPrivilege):
        world["anon"].execute("select " + function.format(message=world["message"], conversation=world["conversation"]))


@pytest.mark.parametrize("function", [
    "public.claim_conversation_title('{conversation}')",
    "public.set_conversation_title('{conversation}', 'x', 1)",
])
@pytest.mark.parametrize("who", ["a", "b"])
def test_titles_are_the_services_alone(world: dict, db: psycopg.Connection, function: str, who: str) -> None:
    with pytest.raises(errors.InsufficientPrivilege):
        world[who].execute("select " + function.format(conversation=world["conversation"]))
    assert db.execute("select title, title_requested_at from public.conversations").fetchall() == [("A's chat", None)]


def test_other_user_finds_and_redoes_nothing(world: dict, db: psycopg.Connection) -> None:
    assert world["b"].execute("select * from public.search_messages('hello')") == []
    assert world["b"].execute("select public.conversation_branch(%s)", (world["conversation"],)) == [(None,)]
    for call in ("public.regenerate_message(%s)", "public.edit_message(%s, 'x')"):
        with pytest.raises(psycopg.Error, match="message_not_found"):
            world["b"].execute("select " + call, (world["message"],))
    assert count(db, "messages") == 1
    assert [row[0] for row in world["a"].execute("select message_id from public.search_messages('hello')")] == [
        uuid.UUID(world["message"])]
