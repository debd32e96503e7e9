"""Searching one's own messages: found with a snippet and the conversation's title, best match
first, never another user's words (as the real API roles with real JWT claims), nothing for a blank
query, a bounded number of results, and the full-text index doing the finding."""

from __future__ import annotations

import json

import psycopg
import pytest
from psycopg import errors

from tests.support.database import Role
from tests.support.turns import Chat

SEARCH = "select message_id::text, conversation_title, role, snippet, rank from public.search_messages(%s, %s)"


@pytest.fixture
def chat(db: psycopg.Connection, database_url: str) -> Chat:
    return Chat(db, database_url)


@pytest.fixture
def stranger(db: psycopg.Connection, database_url: str) -> Chat:
    return Chat(db, database_url)


def search(chat: Chat, query: str | None, max_results: int | None = 20) -> list[tuple[object, ...]]:
    return chat.user.execute(SEARCH, (query, max_results))


def test_own_messages_and_their_replies_are_found_best_first(chat: Chat) -> None:
    chat.user.execute("update public.conversations set title = 'Plants'")
    once = chat.turn("my basil wilts in the sun")
    chat.turn("tomatoes are fine")
    twice = chat.send("basil again: basil everywhere")
    results = search(chat, "basil")
    assert results[0][0] == twice  # the word twice
    assert once in {message_id for message_id, _, _, _, _ in results}
    assert {role for _, _, role, _, _ in results} == {"user", "assistant"}  # "re my basil wilts in the sun"
    assert all(title == "Plants" for _, title, _, _, _ in results)
    assert "«basil»" in str(results[0][3])


def test_web_search_syntax(chat: Chat) -> None:
    wilts = chat.send("my basil wilts in the sun")
    chat.send("basil thrives in shade")
    assert [row[0] for row in search(chat, '"basil wilts"')] == [wilts]
    assert [row[0] for row in search(chat, "basil -shade")] == [wilts]


def test_another_users_words_are_never_found(chat: Chat, stranger: Chat, db: psycopg.Connection) -> None:
    chat.turn("the launch code is swordfish")
    mine = stranger.send("swordfish for dinner")
    assert [row[0] for row in search(stranger, "swordfish")] == [mine]
    assert search(stranger, "launch code") == []
    anon = Role(chat.service.database_url, "anon")
    with pytest.raises(errors.InsufficientPrivilege):
        anon.execute(SEARCH, ("swordfish", 20))
    service = chat.service.execute(SEARCH, ("swordfish", 20))
    assert service == []  # no user, no messages: the service reads through the tables, not this


@pytest.mark.parametrize("query", ["", "   ", None, "!!! ---", "&|"])
def test_a_blank_query_finds_nothing(chat: Chat, query: str | None) -> None:
    chat.send("anything at all")
    assert search(chat, query) == []


@pytest.mark.parametrize("max_results", [0, 101, None, -1])
def test_max_results_is_between_1_and_100(chat: Chat, max_results: int | None) -> None:
    with pytest.raises(errors.InvalidParameterValue, match="max_results must be between 1 and 100"):
        search(chat, "x", max_results)


def test_max_results_caps_the_answer(chat: Chat) -> None:
    chat.user.execute(
        "insert into public.messages (conversation_id, content) select %s, 'word ' || n from generate_series(1, 5) n",
        (chat.conversation,),
    )
    assert len(search(chat, "word", 2)) == 2


def test_the_full_text_index_does_the_finding(
    chat: Chat, stranger: Chat, db: psycopg.Connection, database_url: str
) -> None:
    """20,000 rows of common words, three with the word searched for: the search reads the GIN index."""
    db.execute("set session_replication_role = replica")  # a bulk load: no per-row triggers
    for who in (chat, stranger):
        db.execute(
            "insert into public.messages (conversation_id, user_id, content)"
            " select %s, %s, 'the quick brown fox number ' || n from generate_series(1, 10000) n",
            (who.conversation, who.user_id),
        )
    db.execute("set session_replication_role = origin")
    for _ in range(3):
        chat.send("a needle in the haystack")
    db.execute("analyze public.messages")

    with psycopg.connect(database_url) as conn:
        conn.execute("set local role authenticated")
        conn.execute("select set_config('request.jwt.claims', %s, true)",
                     (json.dumps({"role": "authenticated", "sub": chat.user_id, "aud": "authenticated"}),))
        assert len(conn.execute("select * from public.search_messages('needle')").fetchall()) == 3
        conn.execute("reset role")
        scans = conn.execute(
            "select pg_stat_get_xact_numscans('public.messages_content_search_idx'::regclass),"
            " pg_stat_get_xact_numscans('public.messages'::regclass)"
        ).fetchone()
    assert scans == (1, 0)  # the index once, the table never read whole
