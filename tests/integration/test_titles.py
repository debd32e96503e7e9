"""Conversation titles as the service asks for them: claimed once, after the first answer, never
over a title the owner set (even one set while the model was writing), and paid for from the
owner's daily tokens like any reply."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg import errors

from tests.support.quotas import limit_user
from tests.support.turns import Chat


@pytest.fixture
def chat(db: psycopg.Connection, database_url: str) -> Chat:
    return Chat(db, database_url)


def claim_title(chat: Chat, conversation: str | None = None) -> object:
    return chat.service.execute("select public.claim_conversation_title(%s)", (conversation or chat.conversation,))[0][0]


def set_title(chat: Chat, title: str | None, tokens: int | None = 30) -> bool:
    return bool(chat.service.execute(
        "select public.set_conversation_title(%s, %s, %s)", (chat.conversation, title, tokens)
    )[0][0])


def title(db: psycopg.Connection, chat: Chat) -> str | None:
    return db.execute("select title from public.conversations where id = %s", (chat.conversation,)).fetchone()[0]


def tokens_today(db: psycopg.Connection, chat: Chat) -> int:
    row = db.execute(
        "select tokens from public.chat_usage where user_id = %s and day = (now() at time zone 'UTC')::date",
        (chat.user_id,),
    ).fetchone()
    return int(row[0]) if row else 0


def test_the_first_answered_turn_is_claimed_once(chat: Chat) -> None:
    chat.turn("how do tides work?")
    chat.turn("and on mars?")
    assert claim_title(chat) == {
        "user_id": chat.user_id,
        "model": None,
        "messages": [{"role": "user", "content": "how do tides work?"},
                     {"role": "assistant", "content": "re how do tides work?"}],
    }
    assert claim_title(chat) is None


def test_the_first_turn_is_the_first_answered_one(chat: Chat) -> None:
    failed = chat.send("lost")
    token = chat.claim(failed)["claim_token"]
    chat.service.execute("select public.fail_message(%s, %s, 'broken')", (failed, token))
    chat.turn("found")
    assert claim_title(chat)["messages"][0] == {"role": "user", "content": "found"}


@pytest.mark.parametrize(
    "arrange",
    [
        pytest.param("nothing answered", id="no answer yet"),
        pytest.param("titled", id="titled by the owner"),
        pytest.param("over quota", id="no tokens left today"),
    ],
)
def test_nothing_to_claim(chat: Chat, db: psycopg.Connection, arrange: str) -> None:
    if arrange == "nothing answered":
        chat.send("hello?")
    else:
        chat.turn("hello")
    if arrange == "titled":
        chat.user.execute("update public.conversations set title = 'Mine'")
    if arrange == "over quota":
        limit_user(db, chat.user_id, tokens_per_day=100)
        chat.service.execute("select public.set_conversation_title(%s, null, 100)", (chat.conversation,))
    assert claim_title(chat) is None
    assert db.execute("select title_requested_at from public.conversations").fetchone() == (None,)


def test_an_unknown_conversation_has_nothing_to_claim_or_set(chat: Chat) -> None:
    assert claim_title(chat, str(uuid.uuid4())) is None
    assert chat.service.execute(
        "select public.set_conversation_title(%s, 'x', 5)", (str(uuid.uuid4()),)
    ) == [(False,)]


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        pytest.param("Tides, explained", "Tides, explained", id="as given"),
        pytest.param('  "Tides\n  explained"  ', "Tides explained", id="one line without quotes"),
        pytest.param("x" * 200, "x" * 80, id="at most 80 characters"),
    ],
)
def test_the_title_is_set_once_and_cleaned(chat: Chat, db: psycopg.Connection, given: str, stored: str) -> None:
    chat.turn("hello")
    claim_title(chat)
    assert set_title(chat, given) is True
    assert title(db, chat) == stored
    assert set_title(chat, "Another") is False
    assert title(db, chat) == stored


@pytest.mark.parametrize("given", ["", "  ", '""', None])
def test_an_empty_title_sets_nothing_but_its_tokens_count(chat: Chat, db: psycopg.Connection, given: str | None) -> None:
    chat.turn("hello")
    assert set_title(chat, given, tokens=12) is False
    assert (title(db, chat), tokens_today(db, chat)) == (None, 12)


def test_a_title_the_owner_set_meanwhile_is_kept_and_the_tokens_still_count(chat: Chat, db: psycopg.Connection) -> None:
    chat.turn("hello")
    assert claim_title(chat) is not None
    chat.user.execute("update public.conversations set title = 'My own'")
    assert set_title(chat, "The model's", tokens=40) is False
    assert (title(db, chat), tokens_today(db, chat)) == ("My own", 40)


def test_title_tokens_use_up_the_daily_quota(chat: Chat, db: psycopg.Connection) -> None:
    limit_user(db, chat.user_id, tokens_per_day=50)
    chat.turn("hello")
    claim_title(chat)
    set_title(chat, "Hello", tokens=50)
    assert tokens_today(db, chat) == 50
    quota = chat.user.execute("select public.chat_quota()")[0][0]
    assert quota["tokens_left_today"] == 0
    with pytest.raises(psycopg.Error) as refused:
        chat.send("more")
    assert refused.value.sqlstate == "PGRST" and "tokens_per_day" in str(refused.value.diag.message_primary)


def test_negative_tokens_are_refused(chat: Chat, db: psycopg.Connection) -> None:
    with pytest.raises(errors.InvalidParameterValue):
        set_title(chat, "x", tokens=-1)
    assert tokens_today(db, chat) == 0


@pytest.mark.parametrize("call", [
    "public.claim_conversation_title('{conversation}')",
    "public.set_conversation_title('{conversation}', 'x', 0)",
])
def test_only_the_service_titles_conversations(chat: Chat, db: psycopg.Connection, call: str) -> None:
    chat.turn("hello")
    with pytest.raises(errors.InsufficientPrivilege):
        chat.user.execute("select " + call.format(conversation=chat.conversation))
    assert db.execute("select title, title_requested_at from public.conversations").fetchone() == (None, None)
