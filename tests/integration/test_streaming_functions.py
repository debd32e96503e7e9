"""The streaming functions against Postgres, as the service role and as users with real JWT
claims: the reply row from the first token, reset by a new attempt on the same row, fenced by
the claim like every other write; stop_reply only for the message's owner; a message that ends
failed or stopped never leaves its reply `streaming`; users still write none of it."""

from __future__ import annotations

import psycopg
import pytest

from tests.support.database import Role, one_row
from tests.support.deliveries import message_state, pending_message


@pytest.fixture
def service_role(database_url: str) -> Role:
    return Role(database_url, "service_role")


def owner_of(db: psycopg.Connection, message_id: str) -> str:
    return str(one_row(db, "select user_id from public.messages where id = %s", (message_id,))[0])


def claim(service_role: Role, message_id: str, max_attempts: int = 5) -> dict:
    result = service_role.execute("select public.claim_message_for_reply(%s, 6000, 60, %s)", (message_id, max_attempts))[0][0]
    assert isinstance(result, dict)
    return result


def begin(service_role: Role, message_id: str, token: str, content: str) -> dict | None:
    return service_role.execute("select public.begin_reply(%s, %s, %s)", (message_id, token, content))[0][0]  # type: ignore[return-value]


def finish(service_role: Role, message_id: str, token: str, content: str, status: str, error: str | None = None) -> dict:
    return service_role.execute(  # type: ignore[return-value]
        "select public.finish_reply(%s, %s, %s, %s, %s)", (message_id, token, content, status, error)
    )[0][0]


def reply(db: psycopg.Connection, message_id: str) -> tuple:
    return one_row(db, "select content, status, attempt from public.messages where reply_to = %s", (message_id,))


def expire_lease(db: psycopg.Connection, message_id: str) -> None:
    db.execute("update public.messages set lease_expires_at = now() - interval '1 second' where id = %s", (message_id,))


def test_the_row_exists_from_the_first_token_and_ends_done_once(db: psycopg.Connection, service_role: Role) -> None:
    message_id, _ = pending_message(db, "hi")
    token = claim(service_role, message_id)["claim_token"]

    started = begin(service_role, message_id, token, "Ec")
    assert reply(db, message_id) == ("Ec", "streaming", 1)
    assert service_role.execute("select public.checkpoint_reply(%s, %s, 'Echo:')", (message_id, token))[0][0] is True
    assert reply(db, message_id) == ("Echo:", "streaming", 1)
    done = finish(service_role, message_id, token, "Echo: hi", "done")

    assert started is not None and done["reply_id"] == started["reply_id"]
    assert reply(db, message_id) == ("Echo: hi", "done", 1)
    assert message_state(db, message_id)[0] == "done"
    assert one_row(db, "select count(*) from public.messages where reply_to = %s", (message_id,)) == (1,)


def test_a_new_attempt_resets_the_same_row_and_the_stale_one_is_refused(db: psycopg.Connection, service_role: Role) -> None:
    message_id, _ = pending_message(db, "again")
    stale = claim(service_role, message_id)["claim_token"]
    first = begin(service_role, message_id, stale, "Echo: ag")
    expire_lease(db, message_id)  # the worker died mid-stream
    current = claim(service_role, message_id)["claim_token"]

    second = begin(service_role, message_id, current, "E")

    assert first is not None and second == {"reply_id": first["reply_id"], "attempt": 2}
    assert reply(db, message_id) == ("E", "streaming", 2)
    assert begin(service_role, message_id, stale, "Echo: again") is None
    assert service_role.execute("select public.checkpoint_reply(%s, %s, 'x')", (message_id, stale))[0][0] is False
    assert finish(service_role, message_id, stale, "Echo: again", "done")["superseded"] is True
    assert reply(db, message_id) == ("E", "streaming", 2)


@pytest.mark.parametrize("status", ["stopped", "failed"])
def test_a_stopped_or_failed_stream_keeps_its_partial_text(db: psycopg.Connection, service_role: Role, status: str) -> None:
    message_id, _ = pending_message(db, "partial")
    token = claim(service_role, message_id)["claim_token"]
    begin(service_role, message_id, token, "Echo: ")

    error = "The AI model's reply broke off. Please send your message again." if status == "failed" else None
    finish(service_role, message_id, token, "Echo: par", status, error)

    assert reply(db, message_id) == ("Echo: par", status, 1)
    assert message_state(db, message_id)[:2] == (status, error)


def test_out_of_attempts_ends_a_reply_left_streaming_as_failed(db: psycopg.Connection, service_role: Role) -> None:
    message_id, _ = pending_message(db, "doomed")
    token = claim(service_role, message_id, max_attempts=1)["claim_token"]
    begin(service_role, message_id, token, "Echo: do")
    expire_lease(db, message_id)

    assert service_role.execute("select public.claim_message_for_reply(%s, 6000, 60, 1)", (message_id,))[0][0] is None

    assert message_state(db, message_id)[0] == "failed"
    content, status, _ = reply(db, message_id)
    assert (content, status) == ("Echo: do", "failed")


def test_stop_reply_is_for_the_owner_only(db: psycopg.Connection, database_url: str, service_role: Role) -> None:
    message_id, _ = pending_message(db, "mine")
    stranger = Role(database_url, "authenticated", "00000000-0000-4000-8000-00000000000b")
    anon = Role(database_url, "anon")

    with pytest.raises(psycopg.errors.NoDataFound):
        stranger.execute("select public.stop_reply(%s)", (message_id,))
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        anon.execute("select public.stop_reply(%s)", (message_id,))
    assert message_state(db, message_id)[0] == "pending"


def test_stop_reply_by_state(db: psycopg.Connection, database_url: str, service_role: Role) -> None:
    pending, _ = pending_message(db, "not yet claimed")
    streaming, _ = pending_message(db, "being streamed")
    orphaned, _ = pending_message(db, "worker died")
    token = claim(service_role, streaming)["claim_token"]
    begin(service_role, streaming, token, "Echo: be")
    dead = claim(service_role, orphaned)["claim_token"]
    begin(service_role, orphaned, dead, "Echo: wo")
    expire_lease(db, orphaned)

    def stop(message_id: str) -> dict:
        return Role(database_url, "authenticated", owner_of(db, message_id)).execute(  # type: ignore[return-value]
            "select public.stop_reply(%s)", (message_id,))[0][0]

    assert stop(pending) == {"status": "stopped", "stop_requested": True}
    assert stop(streaming) == {"status": "processing", "stop_requested": True}
    assert stop(orphaned) == {"status": "stopped", "stop_requested": True}
    assert reply(db, orphaned)[:2] == ("Echo: wo", "stopped")
    asked = service_role.execute("select * from public.stop_requested_messages(%s::uuid[])", ([streaming, pending],))
    assert {str(row[0]) for row in asked} == {streaming, pending}
    assert claim_or_none(service_role, pending) is None  # a stopped message is never generated
    finish(service_role, streaming, token, "Echo: bei", "stopped")
    assert stop(streaming) == {"status": "stopped", "stop_requested": True}  # settled: a no-op


def claim_or_none(service_role: Role, message_id: str) -> object:
    return service_role.execute("select public.claim_message_for_reply(%s, 6000, 60, 5)", (message_id,))[0][0]


@pytest.mark.parametrize(
    "statement",
    [
        pytest.param("update public.messages set status = 'stopped' where id = %s", id="status"),
        pytest.param("update public.messages set stop_requested_at = now() where id = %s", id="stop_requested_at"),
        pytest.param("update public.messages set content = 'forged' where reply_to = %s", id="assistant content"),
        pytest.param("select public.begin_reply(%s, gen_random_uuid(), 'forged')", id="begin_reply"),
        pytest.param("select public.finish_reply(%s, gen_random_uuid(), 'x', 'done')", id="finish_reply"),
    ],
)
def test_users_still_write_none_of_it(db: psycopg.Connection, database_url: str, statement: str) -> None:
    message_id, _ = pending_message(db, "hands off")
    user = Role(database_url, "authenticated", owner_of(db, message_id))

    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        user.execute(statement, (message_id,))


def test_users_cannot_insert_streaming_or_attempt_columns(db: psycopg.Connection, database_url: str) -> None:
    message_id, conversation_id = pending_message(db, "x")
    user = Role(database_url, "authenticated", owner_of(db, message_id))

    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        user.execute(
            "insert into public.messages (conversation_id, content, attempt) values (%s, 'y', 7)", (conversation_id,)
        )


# --- streamed replies under issue 11's order and quotas (20261201300000_streaming_replies.sql) ---


def tokens_used(db: psycopg.Connection, user_id: str) -> int:
    row = db.execute("select coalesce(sum(tokens), 0) from public.chat_usage where user_id = %s", (user_id,)).fetchone()
    assert row is not None
    return int(row[0])


def second_message(db: psycopg.Connection, conversation_id: str, user_id: str, content: str) -> str:
    return str(one_row(
        db, "insert into public.messages (conversation_id, user_id, content) values (%s, %s, %s) returning id",
        (conversation_id, user_id, content),
    )[0])


def test_a_streamed_replys_reported_usage_counts_once_toward_the_daily_tokens(db: psycopg.Connection, service_role: Role) -> None:
    message_id, _ = pending_message(db, "count me")
    user_id = owner_of(db, message_id)
    token = claim(service_role, message_id)["claim_token"]
    begin(service_role, message_id, token, "Ec")
    assert tokens_used(db, user_id) == 0

    service_role.execute(
        "select public.finish_reply(%s, %s, 'Echo: count me', 'done', null, 'fake-model', 30, 12)", (message_id, token)
    )

    assert tokens_used(db, user_id) == 42
    assert finish(service_role, message_id, token, "Echo: count me", "done")["superseded"] is True
    assert tokens_used(db, user_id) == 42  # a settled reply is never counted again


@pytest.mark.parametrize("status", ["stopped", "failed"])
def test_a_partial_reply_without_usage_counts_its_text_at_the_estimate(
    db: psycopg.Connection, service_role: Role, status: str
) -> None:
    message_id, _ = pending_message(db, "cut short")
    user_id = owner_of(db, message_id)
    token = claim(service_role, message_id)["claim_token"]
    begin(service_role, message_id, token, "E")

    finish(service_role, message_id, token, "x" * 41, status, "broke off" if status == "failed" else None)

    assert tokens_used(db, user_id) == 11  # 41 characters, one token per 4, rounded up


@pytest.mark.parametrize("status", ["done", "stopped", "failed"])
def test_every_ending_of_a_streamed_reply_hands_on_the_next_message(
    db: psycopg.Connection, service_role: Role, status: str
) -> None:
    first, conversation_id = pending_message(db, "first")
    later = second_message(db, conversation_id, owner_of(db, first), "second")
    token = claim(service_role, first)["claim_token"]
    waiting = service_role.execute("select public.claim_message_for_reply(%s, 6000, 60)", (later,))[0][0]
    assert waiting == {"waiting": True, "message_id": later, "waiting_for": first}
    begin(service_role, first, token, "Ec")

    ended = finish(service_role, first, token, "Echo: first", status)

    assert ended["status"] == status and ended["next_message_id"] == later
    assert "claim_token" in claim(service_role, later)


def test_a_stop_before_the_claim_keeps_the_message_stopped(db: psycopg.Connection, database_url: str, service_role: Role) -> None:
    message_id, _ = pending_message(db, "never mind")
    owner = Role(database_url, "authenticated", owner_of(db, message_id))

    assert owner.execute("select public.stop_reply(%s)", (message_id,))[0][0] == {"status": "stopped", "stop_requested": True}

    assert service_role.execute("select public.claim_message_for_reply(%s, 6000, 60)", (message_id,))[0][0] is None
    assert message_state(db, message_id)[0] == "stopped"
