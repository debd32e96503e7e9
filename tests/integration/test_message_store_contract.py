"""One contract, two implementations of chat.ports.MessageStore: the supabase-py adapter over the
gateway and real Postgres, and the in-memory fake the unit tests use. Every row runs against
both, so the fake cannot drift from the SQL it stands for."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import psycopg
import pytest

from adapters.message_store import SupabaseMessageStore, service_client, shared_http_client
from chat.errors import ClaimSuperseded, StoreRejected
from chat.ports import ClaimedMessage, MessageStore, ModelReply, WaitingMessage
from devstack.stack import LocalStack
from tests.support.deliveries import message_state, pending_message
from tests.support.fakes import InMemoryDatabase, InMemoryMessageStore

BUDGET, MAX_MESSAGES, LEASE = 6000, 200, 60
REPLY = ModelReply("Echo: hello", "fake-model", 3, 2)


class Rows(Protocol):
    """Arranging and reading rows behind a store, however that store keeps them."""

    def pending_message(self, content: str = "hello") -> str: ...

    def conversation(self, *contents: str) -> list[str]:
        """Messages of one conversation inserted together, in this order."""

    def state(self, message_id: str) -> tuple[str, str | None, int]: ...

    def expire_lease(self, message_id: str) -> None: ...


class PostgresRows:
    def __init__(self, db: psycopg.Connection) -> None:
        self.db = db

    def pending_message(self, content: str = "hello") -> str:
        return pending_message(self.db, content)[0]

    def conversation(self, *contents: str) -> list[str]:
        first, conversation_id = pending_message(self.db, contents[0])
        rows = self.db.execute(
            "insert into public.messages (conversation_id, user_id, content) select c.id, c.user_id, m.content"
            "  from public.conversations c, unnest(%s::text[]) with ordinality as m(content, n)"
            " where c.id = %s order by m.n returning id::text",
            (list(contents[1:]), conversation_id),
        ).fetchall()
        return [first, *(row[0] for row in rows)]

    def state(self, message_id: str) -> tuple[str, str | None, int]:
        return message_state(self.db, message_id)

    def expire_lease(self, message_id: str) -> None:
        self.db.execute("update public.messages set lease_expires_at = now() - interval '1 s' where id = %s", (message_id,))


class MemoryRows:
    def __init__(self, database: InMemoryDatabase) -> None:
        self.database = database

    def pending_message(self, content: str = "hello") -> str:
        return self.database.add_message(self.database.add_conversation("user-1"), content)

    def conversation(self, *contents: str) -> list[str]:
        conversation_id = self.database.add_conversation("user-1")
        return [self.database.add_message(conversation_id, content) for content in contents]

    def state(self, message_id: str) -> tuple[str, str | None, int]:
        row = self.database.messages[message_id]
        return row.status, row.error, row.attempts

    def expire_lease(self, message_id: str) -> None:
        self.database.messages[message_id].lease_expires_at = self.database.clock() - 1


@dataclass
class Subject:
    store: MessageStore
    rows: Rows


@pytest.fixture(params=["supabase", "in_memory"])
def subject(request: pytest.FixtureRequest) -> Iterator[Subject]:
    if request.param == "in_memory":
        database = InMemoryDatabase()
        yield Subject(InMemoryMessageStore(database), MemoryRows(database))
        return
    stack: LocalStack = request.getfixturevalue("stack")
    db: psycopg.Connection = request.getfixturevalue("db")
    http = shared_http_client(8)
    environment = stack.service_environment()
    client = service_client(environment["SUPABASE_URL"], environment["SUPABASE_SERVICE_ROLE_KEY"], http)
    yield Subject(SupabaseMessageStore(client), PostgresRows(db))
    http.close()


def claim(subject: Subject, message_id: str, max_attempts: int = 5, token: str | None = None) -> ClaimedMessage | None:
    claimed = subject.store.claim_message_for_reply(message_id, LEASE, max_attempts, BUDGET, MAX_MESSAGES, token)
    assert not isinstance(claimed, WaitingMessage), claimed
    return claimed


def test_a_claim_takes_the_message_once_with_its_context(subject: Subject) -> None:
    message_id = subject.rows.pending_message("hello")
    first = claim(subject, message_id)
    assert first is not None
    assert (first.message_id, first.attempt, first.context) == (message_id, 1, [{"role": "user", "content": "hello"}])
    assert claim(subject, message_id) is None
    assert subject.rows.state(message_id) == ("processing", None, 1)


def test_completing_twice_keeps_the_first_reply(subject: Subject) -> None:
    message_id = subject.rows.pending_message()
    claimed = claim(subject, message_id)
    assert claimed is not None
    first = subject.store.complete_message_for_reply(claimed, REPLY)
    second = subject.store.complete_message_for_reply(claimed, ModelReply("another", "fake-model", None, None))
    assert first is not None and second is not None
    assert (second.reply_id, second.content) == (first.reply_id, "Echo: hello")
    assert subject.rows.state(message_id) == ("done", None, 1)
    assert subject.store.settled_messages([message_id]) == [message_id]


def test_a_stale_claim_can_neither_answer_nor_fail_nor_release(subject: Subject) -> None:
    message_id = subject.rows.pending_message()
    stale = claim(subject, message_id)
    assert stale is not None
    subject.rows.expire_lease(message_id)
    current = claim(subject, message_id)
    assert current is not None and current.claim_token != stale.claim_token
    with pytest.raises(ClaimSuperseded):
        subject.store.complete_message_for_reply(stale, REPLY)
    assert not subject.store.fail_message(stale, "stale").failed
    assert not subject.store.release_message(message_id, stale.claim_token)
    assert subject.rows.state(message_id) == ("processing", None, 2)
    stored = subject.store.complete_message_for_reply(current, REPLY)
    assert stored is not None
    assert subject.store.complete_message_for_reply(stale, REPLY) == stored  # answered: the reply, whoever asks


def test_a_failed_message_never_becomes_done(subject: Subject) -> None:
    message_id = subject.rows.pending_message()
    claimed = claim(subject, message_id)
    assert claimed is not None
    assert subject.store.fail_message(claimed, "The AI model is busy.").failed
    with pytest.raises(ClaimSuperseded):
        subject.store.complete_message_for_reply(claimed, REPLY)
    assert subject.rows.state(message_id) == ("failed", "The AI model is busy.", 1)


def test_failing_a_claimed_message_shows_the_reason_and_never_overrides_a_reply(subject: Subject) -> None:
    failing, answered = subject.rows.pending_message("a"), subject.rows.pending_message("b")
    failing_claim, answered_claim = claim(subject, failing), claim(subject, answered)
    assert failing_claim is not None and answered_claim is not None
    assert subject.store.fail_message(failing_claim, "The AI model is busy.").failed
    subject.store.complete_message_for_reply(answered_claim, REPLY)
    assert not subject.store.fail_message(answered_claim, "too late").failed
    assert subject.rows.state(failing) == ("failed", "The AI model is busy.", 1)
    assert subject.rows.state(answered) == ("done", None, 1)


def test_a_released_claim_is_claimable_at_once_without_spending_an_attempt(subject: Subject) -> None:
    message_id = subject.rows.pending_message()
    claimed = claim(subject, message_id)
    assert claimed is not None
    assert subject.store.release_message(message_id, claimed.claim_token)
    assert not subject.store.release_message(message_id, claimed.claim_token)  # no longer the current claim
    again = claim(subject, message_id)
    assert again is not None and again.attempt == 1


def test_an_expired_lease_is_stalled_and_claimed_again(subject: Subject) -> None:
    message_id = subject.rows.pending_message()
    assert claim(subject, message_id) is not None
    assert message_id not in subject.store.list_stalled_messages(30, 100)
    subject.rows.expire_lease(message_id)
    assert message_id in subject.store.list_stalled_messages(30, 100)
    again = claim(subject, message_id)
    assert again is not None and again.attempt == 2


def test_a_message_out_of_attempts_is_failed_visibly(subject: Subject) -> None:
    message_id = subject.rows.pending_message()
    assert claim(subject, message_id, max_attempts=1) is not None
    subject.rows.expire_lease(message_id)
    assert claim(subject, message_id, max_attempts=1) is None
    assert subject.rows.state(message_id) == (
        "failed", "No reply could be generated after 1 attempts. Please send the message again.", 1
    )
    assert subject.store.settled_messages([message_id]) == [message_id]


def test_a_function_the_database_does_not_have_is_our_bug_not_an_outage(stack: LocalStack) -> None:
    environment = stack.service_environment()
    client = service_client(environment["SUPABASE_URL"], environment["SUPABASE_SERVICE_ROLE_KEY"], shared_http_client(2))
    with pytest.raises(StoreRejected, match=r"Supabase refused no_such_function \(PGRST202\)"):
        SupabaseMessageStore(client)._rpc("no_such_function", {})


def test_a_later_message_waits_and_whoever_settles_the_earlier_names_it_next(subject: Subject) -> None:
    first, second, third = subject.rows.conversation("one", "two", "three")
    assert subject.store.claim_message_for_reply(second, LEASE, 5, BUDGET, MAX_MESSAGES) == WaitingMessage(second, first)
    claimed = claim(subject, first)
    assert claimed is not None
    stored = subject.store.complete_message_for_reply(claimed, ModelReply("Echo: one", "fake-model", None, None))
    assert stored is not None and stored.next_message_id == second
    claimed = claim(subject, second)
    assert claimed is not None
    assert [item["content"] for item in claimed.context] == ["one", "Echo: one", "two"]
    failed = subject.store.fail_message(claimed, "The AI model is busy.")
    assert (failed.failed, failed.next_message_id) == (True, third)
    assert subject.rows.state(third) == ("pending", None, 0)


def test_a_claim_takes_the_token_its_caller_chose_and_is_released_by_it(subject: Subject) -> None:
    message_id = subject.rows.pending_message()
    token = "6f1c2a8e-8c3b-4a57-9d55-0c1f6a3f0b9e"
    claimed = claim(subject, message_id, token=token)
    assert claimed is not None and claimed.claim_token == token
    assert subject.store.release_message(message_id, token)
    assert subject.rows.state(message_id) == ("processing", None, 0)


def test_the_sweep_lists_only_the_head_of_a_conversations_queue(subject: Subject) -> None:
    """Later messages wait and are handed on; re-driving them would be claims refused for nothing."""
    first, second = subject.rows.conversation("one", "two")
    claimed = claim(subject, first)
    assert claimed is not None
    subject.rows.expire_lease(first)
    listed = subject.store.list_stalled_messages(0, 10)
    assert first in listed and second not in listed
