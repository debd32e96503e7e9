"""reply_tick (20261206000000_reply_tick.sql) against Postgres, as the real roles: one call stores
every streamed reply's text under its claim and extends that claim's lease, refuses (and reports)
the checkpoints of stale claims without writing anything for them, and reports which of the
streamed messages their owners asked to stop. It takes the conversations' locks first, in id
order, as every pipeline writer takes a conversation's lock before its messages'."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.support.database import Role, one_row
from tests.support.deliveries import pending_message
from tests.support.polling import wait_until

LEASE = 60
EMPTY: dict[str, list[str]] = {"superseded": [], "stop_requested": []}


@pytest.fixture
def service_role(database_url: str) -> Role:
    return Role(database_url, "service_role")


def claim(service_role: Role, message_id: str) -> str:
    claimed = service_role.execute("select public.claim_message_for_reply(%s, 6000, %s)", (message_id, LEASE))[0][0]
    assert isinstance(claimed, dict)
    return str(claimed["claim_token"])


def streaming(service_role: Role, db: psycopg.Connection, content: str = "hello") -> tuple[str, str]:
    """A message claimed and streaming: (message id, claim token)."""
    message_id, _ = pending_message(db, content)
    token = claim(service_role, message_id)
    assert service_role.execute("select public.begin_reply(%s, %s, 'E')", (message_id, token))[0][0] is not None
    return message_id, token


def tick(who: Role, checkpoints: list[dict[str, str]], asking: list[str], lease: int | None = LEASE) -> Any:
    return who.execute("select public.reply_tick(%s, %s::uuid[], %s)", (Jsonb(checkpoints), asking, lease))[0][0]


def item(message_id: str, token: str, content: str) -> dict[str, str]:
    return {"message_id": message_id, "claim_token": token, "content": content}


def written(db: psycopg.Connection, message_id: str) -> tuple[Any, ...]:
    """Everything a tick may write for a message: its lease, and its reply's text and time."""
    return one_row(
        db,
        "select m.lease_expires_at, m.updated_at, r.content, r.updated_at"
        "  from public.messages m left join public.messages r on r.reply_to = m.id where m.id = %s",
        (message_id,),
    )


def lease_left(db: psycopg.Connection, message_id: str) -> float:
    return float(one_row(
        db, "select extract(epoch from lease_expires_at - now()) from public.messages where id = %s", (message_id,)
    )[0])


def test_a_checkpoint_is_stored_and_its_lease_extended_under_the_current_claim(
    db: psycopg.Connection, service_role: Role
) -> None:
    message_id, token = streaming(service_role, db)
    _, _, _, reply_updated = written(db, message_id)

    assert tick(service_role, [item(message_id, token, "Echo: hel")], [], lease=600) == EMPTY

    _, _, content, updated = written(db, message_id)
    assert content == "Echo: hel" and updated > reply_updated
    assert 590 < lease_left(db, message_id) <= 600
    assert one_row(db, "select status, claim_token::text from public.messages where id = %s", (message_id,)) == (
        "processing", token
    )


@pytest.mark.parametrize(
    "arrange",
    [
        pytest.param("another_attempt", id="another attempt holds the message"),
        pytest.param("not_begun", id="claimed, no reply row yet"),
        pytest.param("stopped", id="the reply ended stopped"),
        pytest.param("deleted", id="the conversation was deleted"),
    ],
)
def test_a_stale_claims_checkpoint_is_superseded_and_nothing_is_written(
    db: psycopg.Connection, service_role: Role, arrange: str
) -> None:
    message_id, conversation_id = pending_message(db, "stale")
    token = claim(service_role, message_id)
    if arrange != "not_begun":
        service_role.execute("select public.begin_reply(%s, %s, 'A')", (message_id, token))
    if arrange == "another_attempt":
        db.execute("update public.messages set lease_expires_at = now() - interval '1 second' where id = %s", (message_id,))
        current = claim(service_role, message_id)
        service_role.execute("select public.begin_reply(%s, %s, 'B')", (message_id, current))
    elif arrange == "stopped":
        service_role.execute("select public.finish_reply(%s, %s, 'A', 'stopped')", (message_id, token))
    elif arrange == "deleted":
        db.execute("delete from public.conversations where id = %s", (conversation_id,))
    before = written(db, message_id) if arrange != "deleted" else None

    answer = tick(service_role, [item(message_id, token, "A, later")], [], lease=600)

    assert answer == {"superseded": [message_id], "stop_requested": []}
    assert (written(db, message_id) if arrange != "deleted" else None) == before


def test_one_tick_stores_the_current_and_refuses_only_the_stale(db: psycopg.Connection, service_role: Role) -> None:
    current, token = streaming(service_role, db, "one")
    stale, _ = streaming(service_role, db, "two")
    someone_elses = "00000000-0000-4000-8000-000000000001"

    answer = tick(service_role, [item(stale, someone_elses, "x"), item(current, token, "Echo: one")], [])

    assert answer == {"superseded": [stale], "stop_requested": []}
    assert [written(db, each)[2] for each in (current, stale)] == ["Echo: one", "E"]


def test_stop_requests_are_reported_only_for_the_messages_asked_about(
    db: psycopg.Connection, service_role: Role, database_url: str
) -> None:
    asked, _ = streaming(service_role, db, "stop me")
    not_asked, _ = streaming(service_role, db, "keep going")
    elsewhere, _ = streaming(service_role, db, "another process's")
    for message_id in (asked, elsewhere):
        owner = str(one_row(db, "select user_id from public.messages where id = %s", (message_id,))[0])
        Role(database_url, "authenticated", owner).execute("select public.stop_reply(%s)", (message_id,))
    missing = "00000000-0000-4000-8000-0000000000ff"

    assert tick(service_role, [], [asked, not_asked, missing]) == {"superseded": [], "stop_requested": [asked]}


@pytest.mark.parametrize(
    ("checkpoints", "asking"),
    [
        pytest.param([], [], id="empty arrays"),
        pytest.param(None, None, id="nulls"),
    ],
)
def test_an_empty_tick_answers_empty_arrays(service_role: Role, checkpoints: Any, asking: Any) -> None:
    answer = service_role.execute("select public.reply_tick(%s::jsonb, %s::uuid[], 60)", (
        None if checkpoints is None else Jsonb(checkpoints), asking
    ))[0][0]
    assert answer == EMPTY


@pytest.mark.parametrize("lease", [None, 0, -5])
def test_a_lease_that_is_not_a_positive_number_of_seconds_is_refused(service_role: Role, lease: int | None) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        tick(service_role, [], [], lease=lease)


@pytest.mark.parametrize("who", ["anon", "authenticated"])
def test_only_the_service_role_may_tick(db: psycopg.Connection, service_role: Role, database_url: str, who: str) -> None:
    message_id, token = streaming(service_role, db)
    owner = str(one_row(db, "select user_id from public.messages where id = %s", (message_id,))[0])
    caller = Role(database_url, who, owner if who == "authenticated" else None)
    before = written(db, message_id)

    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        tick(caller, [item(message_id, token, "forged")], [message_id], lease=3600)
    assert written(db, message_id) == before


def test_the_tick_locks_conversations_in_id_order_whatever_the_order_it_is_given(
    db: psycopg.Connection, service_role: Role, database_url: str
) -> None:
    """While a writer of the later conversation holds its lock, the tick waits there, already
    holding the earlier one: every tick locks in one order, so two ticks never deadlock."""
    (low, low_token), (high, high_token) = sorted(
        (streaming(service_role, db, text) for text in ("a", "b")),
        key=lambda streamed: conversation_of(db, streamed[0]),
    )
    answers: list[Any] = []
    with psycopg.connect(database_url) as writer:  # as a claim of the later conversation would
        writer.execute("select 1 from public.conversations where id = %s for no key update", (conversation_of(db, high),))
        ticking = threading.Thread(target=lambda: answers.append(
            tick(service_role, [item(high, high_token, "B"), item(low, low_token, "A")], [])
        ))
        ticking.start()
        wait_until(lambda: waiting_for_a_lock(db))
        with pytest.raises(psycopg.errors.LockNotAvailable), psycopg.connect(database_url) as probe:
            probe.execute(
                "select 1 from public.conversations where id = %s for no key update nowait", (conversation_of(db, low),)
            )
        writer.rollback()
    ticking.join(10)
    assert answers == [EMPTY]
    assert [written(db, each)[2] for each in (low, high)] == ["A", "B"]


def conversation_of(db: psycopg.Connection, message_id: str) -> str:
    return str(one_row(db, "select conversation_id from public.messages where id = %s", (message_id,))[0])


def waiting_for_a_lock(db: psycopg.Connection) -> bool:
    row = db.execute(
        "select count(*) from pg_stat_activity where wait_event_type = 'Lock' and query like '%%reply_tick%%'"
    ).fetchone()
    return bool(row and row[0])
