"""A conversation as a tree of turns: where a message goes when it names no place, edits and
regenerations beside the message they redo, the model's context along the branch, one branch read
with its versions, and no pointer into another user's conversation. As the real API roles with
real JWT claims; the service's side through the pipeline's own functions."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from psycopg import errors

from devstack.migrate import apply_bootstrap, apply_migrations, migration_files
from tests.support.turns import Chat, contents, refusal_code

BRANCHES_MIGRATION = "20261207000000"


@pytest.fixture
def chat(db: psycopg.Connection, database_url: str) -> Chat:
    return Chat(db, database_url)


@pytest.fixture
def stranger(db: psycopg.Connection, database_url: str) -> Chat:
    return Chat(db, database_url)


def row(db: psycopg.Connection, message_id: str) -> dict[str, object]:
    cursor = db.execute(
        "select content, parent_id::text, edit_of::text, regenerates::text, status from public.messages where id = %s",
        (message_id,),
    )
    values = cursor.fetchone()
    assert values is not None
    return dict(zip(["content", "parent_id", "edit_of", "regenerates", "status"], values, strict=True))


def context(chat: Chat, message_id: str, budget: int = 6000, max_messages: int = 200) -> list[tuple[str, str]]:
    result = chat.service.execute(
        "select public.fetch_message_context(%s, %s, %s)", (message_id, budget, max_messages)
    )[0][0]
    return [(item["role"], item["content"]) for item in result]


# --- where a message goes ---------------------------------------------------------------------


def test_a_message_follows_the_newest_one_and_a_reply_hangs_under_its_message(
    chat: Chat, db: psycopg.Connection
) -> None:
    first = chat.turn("one")
    second = chat.send("two")
    assert row(db, first)["parent_id"] is None
    assert row(db, second)["parent_id"] == first
    reply_parent = db.execute("select parent_id::text from public.messages where reply_to = %s", (first,)).fetchone()
    assert reply_parent == (first,)


def test_a_batch_is_one_branch_in_its_order(chat: Chat, db: psycopg.Connection) -> None:
    chat.user.execute(
        "insert into public.messages (conversation_id, content) values (%s, 'a'), (%s, 'b'), (%s, 'c')",
        (chat.conversation,) * 3,
    )
    rows = db.execute(
        "select m.content, p.content from public.messages m left join public.messages p on p.id = m.parent_id"
        " order by m.seq"
    ).fetchall()
    assert rows == [("a", None), ("b", "a"), ("c", "b")]


def test_concurrent_messages_do_not_fork_the_conversation(chat: Chat, db: psycopg.Connection) -> None:
    first = chat.send("zero")
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: chat.send(f"m{n}"), range(8)))
    rows = db.execute(
        "select m.id::text, m.parent_id::text, m.seq, p.seq from public.messages m"
        " left join public.messages p on p.id = m.parent_id order by m.seq"
    ).fetchall()
    assert [parent for _, parent, _, _ in rows] == [None, *[message_id for message_id, _, _, _ in rows[:-1]]]
    assert rows[0][0] == first
    assert all(parent_seq < seq for _, _, seq, parent_seq in rows[1:])  # a parent before its children


def test_a_message_may_name_its_parent(chat: Chat, db: psycopg.Connection) -> None:
    first = chat.turn("one")
    chat.turn("two")
    fork = chat.send("two, differently", parent_id=first)
    assert row(db, fork)["parent_id"] == first


# --- edit -------------------------------------------------------------------------------------


def test_an_edit_sits_beside_the_message_grouped_under_the_first_version(chat: Chat, db: psycopg.Connection) -> None:
    first = chat.turn("one")
    original = chat.turn("two")
    edited = chat.send("two, better", edit_of=original)
    again = chat.send("two, best", edit_of=edited)
    assert row(db, edited) == {"content": "two, better", "parent_id": first, "edit_of": original,
                               "regenerates": None, "status": "pending"}
    assert (row(db, again)["edit_of"], row(db, again)["parent_id"]) == (original, first)


def test_edit_message_inserts_the_edit_as_the_caller(chat: Chat, db: psycopg.Connection) -> None:
    original = chat.turn("one")
    edited = chat.user.execute("select public.edit_message(%s, 'uno')::text", (original,))[0][0]
    assert row(db, str(edited))["edit_of"] == original
    assert db.execute("select messages from public.chat_usage where user_id = %s", (chat.user_id,)).fetchone() == (2,)


def test_an_edit_needs_new_text(chat: Chat, db: psycopg.Connection) -> None:
    original = chat.turn("one")
    with pytest.raises(errors.CheckViolation):
        chat.user.execute("select public.edit_message(%s, '')", (original,))
    with pytest.raises(errors.NotNullViolation):
        chat.send(edit_of=original)


# --- regenerate -------------------------------------------------------------------------------


def test_a_regeneration_copies_the_message_and_names_the_one_shown(chat: Chat, db: psycopg.Connection) -> None:
    first = chat.turn("one")
    shown = chat.turn("two")
    again = chat.send("ignored", regenerates=shown)
    once_more = chat.send(regenerates=again)  # no content at all: the message's is copied
    assert row(db, again) == {"content": "two", "parent_id": first, "edit_of": None, "regenerates": shown,
                              "status": "pending"}
    assert row(db, once_more)["regenerates"] == shown


def test_regenerating_an_edit_keeps_it_an_edit(chat: Chat, db: psycopg.Connection) -> None:
    chat.turn("one")
    original = chat.turn("two")
    edited = chat.turn("two, better", edit_of=original)
    again = chat.send(regenerates=edited)
    assert (row(db, again)["content"], row(db, again)["edit_of"], row(db, again)["regenerates"]) == (
        "two, better", original, edited)
    edit_of_regeneration = chat.send("two, best", edit_of=again)
    assert row(db, edit_of_regeneration)["edit_of"] == original


@pytest.mark.parametrize("by_reply", [False, True], ids=["by message", "by its reply"])
def test_regenerate_message_counts_as_a_message(chat: Chat, db: psycopg.Connection, by_reply: bool) -> None:
    shown = chat.turn("one")
    reply = db.execute("select id::text from public.messages where reply_to = %s", (shown,)).fetchone()[0]
    again = chat.user.execute("select public.regenerate_message(%s)::text", (reply if by_reply else shown,))[0][0]
    assert row(db, str(again))["regenerates"] == shown
    assert db.execute("select messages from public.chat_usage where user_id = %s", (chat.user_id,)).fetchone() == (2,)


def test_a_message_cannot_both_edit_and_regenerate(chat: Chat) -> None:
    shown = chat.turn("one")
    with pytest.raises(errors.InvalidParameterValue, match="not both"):
        chat.send("x", edit_of=shown, regenerates=shown)


# --- context along the branch -----------------------------------------------------------------


def test_an_edit_is_answered_with_its_branch_only(chat: Chat) -> None:
    chat.turn("one")
    original = chat.turn("two")
    chat.turn("three")
    edited = chat.send("two, better", edit_of=original)
    assert chat.claim(edited)["context"] == [
        {"role": "user", "content": "one"}, {"role": "assistant", "content": "re one"},
        {"role": "user", "content": "two, better"},
    ]


def test_a_regeneration_is_answered_with_the_context_of_the_message(chat: Chat) -> None:
    chat.turn("one")
    shown = chat.turn("two")
    chat.turn("three")
    again = chat.send(regenerates=shown)
    assert [item["content"] for item in chat.claim(again)["context"]] == ["one", "re one", "two"]


def test_the_next_message_continues_the_branch_last_written_to(chat: Chat) -> None:
    chat.turn("one")
    original = chat.turn("two")
    chat.turn("three")
    edited = chat.turn("two, better", edit_of=original)
    after = chat.send("four")
    assert context(chat, after) == [("user", "one"), ("assistant", "re one"), ("user", "two, better"),
                                    ("assistant", "re two, better"), ("user", "four")]
    after_original = chat.send("three, again", parent_id=original)
    assert [text for _, text in context(chat, after_original)] == ["one", "re one", "two", "re two", "three, again"]
    assert edited != original


def test_a_regenerated_reply_replaces_the_first_in_later_context(chat: Chat) -> None:
    chat.turn("one")
    shown = chat.turn("two")
    again = chat.send(regenerates=shown)
    chat.answer(again, "re two, take 2")
    after = chat.send("three")
    assert [text for _, text in context(chat, after)] == ["one", "re one", "two", "re two, take 2", "three"]


@pytest.mark.parametrize(
    ("budget", "max_messages", "expected"),
    [
        pytest.param(6000, 200, ["one", "re one", "three", "re three", "four"], id="failed skipped"),
        pytest.param(6000, 3, ["three", "re three", "four"], id="max_messages counts what is offered"),
        pytest.param(12, 200, ["re three", "four"], id="token budget newest first"),
    ],
)
def test_context_keeps_the_budget_rules_along_the_path(
    chat: Chat, db: psycopg.Connection, budget: int, max_messages: int, expected: list[str]
) -> None:
    chat.turn("one")
    failed = chat.send("two")
    token = chat.claim(failed)["claim_token"]
    chat.service.execute("select public.fail_message(%s, %s, 'broken')", (failed, token))
    chat.turn("three")
    four = chat.send("four")
    assert [text for _, text in context(chat, four, budget, max_messages)] == expected


# --- one branch, with its versions ------------------------------------------------------------


def test_the_default_branch_ends_at_the_newest_message_with_its_versions(chat: Chat) -> None:
    one = chat.turn("one")
    original = chat.turn("two")
    chat.turn("three")
    edited = chat.turn("two, better", edit_of=original)
    again = chat.send(regenerates=edited)
    chat.answer(again, "re two, better, take 2")

    branch = chat.branch()
    assert branch["leaf"] == again and branch["next_before"] is None
    assert contents(branch["messages"]) == ["one", "re one", "two, better", "re two, better, take 2"]
    bubble = branch["messages"][2]
    assert (bubble["id"], bubble["parent_id"], bubble["edit_of"], bubble["regenerates"]) == (
        edited, one, original, None)
    assert bubble["versions"] == {"index": 1, "count": 2, "ids": [original, edited]}
    assert bubble["reply_versions"] == {"index": 1, "count": 2, "ids": [edited, again], "status": "done",
                                        "error": None}
    assert branch["messages"][0]["versions"] == {"index": 0, "count": 1, "ids": [one]}
    assert "versions" not in branch["messages"][1]


def test_a_leaf_in_the_middle_shows_its_branch_to_the_newest_message_below_it(chat: Chat) -> None:
    chat.turn("one")
    original = chat.turn("two")
    three = chat.turn("three")
    chat.turn("two, better", edit_of=original)

    branch = chat.branch(leaf=original)
    assert contents(branch["messages"]) == ["one", "re one", "two", "re two", "three", "re three"]
    assert branch["leaf"] == three
    assert branch["messages"][2]["versions"]["index"] == 0


def test_a_pending_regeneration_shows_no_reply_yet_and_says_so(chat: Chat) -> None:
    chat.turn("one")
    shown = chat.turn("two")
    again = chat.send(regenerates=shown)
    branch = chat.branch()
    assert contents(branch["messages"]) == ["one", "re one", "two"]
    assert branch["messages"][-1]["reply_versions"] == {"index": 1, "count": 2, "ids": [shown, again],
                                                        "status": "pending", "error": None}
    original = chat.branch(leaf=shown)
    assert contents(original["messages"]) == ["one", "re one", "two", "re two"]
    assert original["messages"][2]["reply_versions"]["index"] == 0


def test_a_branch_pages_newest_first(chat: Chat) -> None:
    for word in ["one", "two", "three"]:
        chat.turn(word)
    first = chat.branch(page_size=3)
    assert contents(first["messages"]) == ["re two", "three", "re three"]
    second = chat.branch(before=first["next_before"], page_size=3)
    assert contents(second["messages"]) == ["one", "re one", "two"]
    assert second["next_before"] is None
    last = chat.branch(before=second["messages"][1]["id"], page_size=3)
    assert contents(last["messages"]) == ["one"]


def test_an_empty_conversation_is_an_empty_branch(chat: Chat) -> None:
    assert chat.branch() == {"messages": [], "next_before": None, "leaf": None}


def test_conversation_history_still_reads_every_message(chat: Chat) -> None:
    chat.turn("one")
    original = chat.turn("two")
    chat.turn("two, better", edit_of=original)
    history = chat.user.execute("select public.conversation_history(%s)", (chat.conversation,))[0][0]
    assert contents(history["messages"]) == ["one", "re one", "two", "re two", "two, better", "re two, better"]


# --- another user's conversation --------------------------------------------------------------


@pytest.mark.parametrize("pointer", ["parent_id", "edit_of", "regenerates"])
def test_no_pointer_reaches_into_another_users_conversation(
    chat: Chat, stranger: Chat, db: psycopg.Connection, pointer: str
) -> None:
    secret = chat.turn("my secret")
    before = db.execute("select count(*) from public.messages").fetchone()
    with pytest.raises(errors.InvalidParameterValue, match=f"{pointer} must name a user message of the same conversation"):
        stranger.send("x", **{pointer: secret})
    with pytest.raises(errors.InvalidParameterValue):  # even into the conversation the message is in
        stranger.user.execute(
            f"insert into public.messages (conversation_id, content, {pointer}) values (%s, 'x', %s)",
            (chat.conversation, secret),
        )
    assert db.execute("select count(*) from public.messages").fetchone() == before


@pytest.mark.parametrize("call", [
    "public.regenerate_message('{message}')",
    "public.edit_message('{message}', 'mine now')",
])
def test_another_users_message_cannot_be_redone(chat: Chat, stranger: Chat, call: str) -> None:
    secret = chat.turn("my secret")
    with pytest.raises(psycopg.Error) as refused:
        stranger.user.execute("select " + call.format(message=secret))
    assert refusal_code(refused.value) == "message_not_found"


def test_another_users_branch_is_nothing(chat: Chat, stranger: Chat) -> None:
    secret = chat.turn("my secret")
    assert stranger.user.execute("select public.conversation_branch(%s)", (chat.conversation,)) == [(None,)]
    with pytest.raises(psycopg.Error) as refused:
        stranger.branch(leaf=secret)
    assert refusal_code(refused.value) == "leaf_not_found"


def test_a_pointer_must_be_a_user_message(chat: Chat, db: psycopg.Connection) -> None:
    chat.turn("one")
    reply = db.execute("select id::text from public.messages where role = 'assistant'").fetchone()[0]
    with pytest.raises(errors.InvalidParameterValue):
        chat.send("x", parent_id=reply)
    with pytest.raises(errors.InvalidParameterValue):
        chat.send("x", edit_of=str(uuid.uuid4()))


# --- the migration ----------------------------------------------------------------------------


@pytest.fixture
def fresh_database(database_url: str) -> Iterator[str]:
    name = "branches_backfill"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"drop database if exists {name} with (force)")
        conn.execute(f"create database {name}")
    yield database_url.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"drop database {name} with (force)")


def test_existing_conversations_become_one_branch_each(fresh_database: str, tmp_path: Path) -> None:
    for path in migration_files():
        if path.name < BRANCHES_MIGRATION:
            shutil.copy(path, tmp_path / path.name)
    apply_bootstrap(fresh_database)
    apply_migrations(fresh_database, tmp_path)
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        user = conn.execute("insert into auth.users (id, aud, role, email) values (gen_random_uuid(), 'authenticated',"
                            " 'authenticated', 'old@example.test') returning id").fetchone()[0]
        conversation = conn.execute("insert into public.conversations (user_id) values (%s) returning id",
                                    (user,)).fetchone()[0]
        for word in ("first", "second"):
            message = conn.execute("insert into public.messages (conversation_id, user_id, content, status)"
                                   " values (%s, %s, %s, 'done') returning id", (conversation, user, word)).fetchone()[0]
            conn.execute("insert into public.messages (conversation_id, user_id, role, content, status, reply_to) "
                         "values (%s, %s, 'assistant', %s, 'done', %s)", (conversation, user, f"re {word}", message))
        assert apply_migrations(fresh_database)[0].startswith(BRANCHES_MIGRATION)
        rows = conn.execute("select m.content, p.content from public.messages m"
                            " left join public.messages p on p.id = m.parent_id order by m.seq").fetchall()
        assert rows == [("first", None), ("re first", "first"), ("second", "first"), ("re second", "second")]
