"""One contract, two implementations of the store ports (chat.ports.ReplyStore, awaited on the
reply engine's loop, and chat.ports.MessageStore): the production adapters over the gateway and
real Postgres (PostgrestReplyStore on aiohttp, SupabaseMessageStore on supabase-py), and the
in-memory fake the unit tests use. Every row runs against both, so the fake cannot drift from the
SQL it stands for."""

from __future__ import annotations

from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import psycopg
import pytest

from adapters.message_store import SupabaseMessageStore, service_client, shared_http_client
from adapters.reply_store import PostgrestReplyStore
from chat.errors import ClaimSuperseded, StoreRejected
from chat.ports import ClaimedMessage, MessageStore, ModelReply, ReplyCheckpoint, ReplyStore, TickAnswer, WaitingMessage
from devstack.stack import LocalStack
from tests.support.deliveries import message_state, pending_message
from tests.support.engine_loop import EngineLoop
from tests.support.fakes import InMemoryDatabase, InMemoryMessageStore

BUDGET, MAX_MESSAGES, LEASE = 6000, 200, 60
REPLY = ModelReply("Echo: hello", "fake-model", 3, 2)
T = TypeVar("T")


class Rows(Protocol):
    """Arranging and reading rows behind a store, however that store keeps them."""

    def pending_message(self, content: str = "hello") -> str: ...

    def conversation(self, *contents: str) -> list[str]:
        """Messages of one conversation inserted together, in this order."""

    def state(self, message_id: str) -> tuple[str, str | None, int]: ...

    def expire_lease(self, message_id: str) -> None: ...

    def lease_left(self, message_id: str) -> float:
        """Seconds until the message's lease runs out."""

    def reply(self, message_id: str) -> tuple[str, str, int] | None:
        """The reply row's (content, status, attempt), streaming or ended."""

    def request_stop(self, message_id: str) -> None:
        """What stop_reply does for a message a worker is generating."""

    def title(self, conversation_id: str) -> str | None: ...


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

    def lease_left(self, message_id: str) -> float:
        row = self.db.execute(
            "select extract(epoch from lease_expires_at - now())::float from public.messages where id = %s", (message_id,)
        ).fetchone()
        assert row is not None
        return float(row[0])

    def reply(self, message_id: str) -> tuple[str, str, int] | None:
        row = self.db.execute(
            "select content, status, attempt from public.messages where reply_to = %s", (message_id,)
        ).fetchone()
        return None if row is None else (row[0], row[1], row[2])

    def request_stop(self, message_id: str) -> None:
        self.db.execute("update public.messages set stop_requested_at = now() where id = %s", (message_id,))

    def title(self, conversation_id: str) -> str | None:
        row = self.db.execute("select title from public.conversations where id = %s", (conversation_id,)).fetchone()
        assert row is not None
        return None if row[0] is None else str(row[0])


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

    def lease_left(self, message_id: str) -> float:
        lease = self.database.messages[message_id].lease_expires_at
        assert lease is not None
        return lease - self.database.clock()

    def reply(self, message_id: str) -> tuple[str, str, int] | None:
        streamed = self.database.messages[message_id].streaming
        return None if streamed is None else (streamed.content, streamed.status, streamed.attempt)

    def request_stop(self, message_id: str) -> None:
        self.database.messages[message_id].stop_requested = True

    def title(self, conversation_id: str) -> str | None:
        title = self.database.conversations[conversation_id].fields.get("title")
        return None if title is None else str(title)


@dataclass
class Subject:
    replies: ReplyStore  # awaited on the engine's loop
    reads: MessageStore  # called from plain threads
    rows: Rows
    engine: EngineLoop

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.engine.run(coroutine)



@pytest.fixture(scope="module")
def postgrest_stores(stack: LocalStack, engine: EngineLoop) -> Iterator[tuple[PostgrestReplyStore, SupabaseMessageStore]]:
    environment = stack.service_environment()
    url, key = environment["SUPABASE_URL"], environment["SUPABASE_SERVICE_ROLE_KEY"]
    http = shared_http_client(8)
    yield engine.reply_store(url, key), SupabaseMessageStore(service_client(url, key, http))
    http.close()


@pytest.fixture(params=["postgrest", "in_memory"])
def subject(request: pytest.FixtureRequest, engine: EngineLoop) -> Subject:
    if request.param == "in_memory":
        database = InMemoryDatabase()
        fake = InMemoryMessageStore(database)
        return Subject(fake, fake, MemoryRows(database), engine)
    replies, reads = request.getfixturevalue("postgrest_stores")
    db: psycopg.Connection = request.getfixturevalue("db")
    return Subject(replies, reads, PostgresRows(db), engine)


def claim(subject: Subject, message_id: str, max_attempts: int = 5, token: str | None = None) -> ClaimedMessage | None:
    claimed = subject.run(
        subject.replies.claim_message_for_reply(message_id, LEASE, max_attempts, BUDGET, MAX_MESSAGES, token)
    )
    assert not isinstance(claimed, WaitingMessage), claimed
    return claimed


def claimed(subject: Subject, message_id: str) -> ClaimedMessage:
    taken = claim(subject, message_id)
    assert taken is not None
    return taken


def tick(subject: Subject, *checkpoints: ReplyCheckpoint, streaming: tuple[str, ...] = (), lease: int = LEASE) -> TickAnswer:
    answer = subject.run(subject.replies.reply_tick(list(checkpoints), list(streaming), lease))
    return TickAnswer(sorted(answer.superseded), sorted(answer.stop_requested))  # either order is the contract


def checkpoint(claim: ClaimedMessage, content: str) -> ReplyCheckpoint:
    return ReplyCheckpoint(claim.message_id, claim.claim_token, content)


# --- claims, answers, failures, releases ---------------------------------------------------------


def test_a_claim_takes_the_message_once_with_its_context(subject: Subject) -> None:
    message_id = subject.rows.pending_message("hello")
    first = claim(subject, message_id)
    assert first is not None
    assert (first.message_id, first.attempt, first.context) == (message_id, 1, [{"role": "user", "content": "hello"}])
    assert claim(subject, message_id) is None
    assert subject.rows.state(message_id) == ("processing", None, 1)


def test_completing_twice_keeps_the_first_reply(subject: Subject) -> None:
    message_id = subject.rows.pending_message()
    taken = claimed(subject, message_id)
    first = subject.run(subject.replies.complete_message_for_reply(taken, REPLY))
    second = subject.run(subject.replies.complete_message_for_reply(taken, ModelReply("another", "fake-model", None, None)))
    assert first is not None and second is not None
    assert (second.reply_id, second.content) == (first.reply_id, "Echo: hello")
    assert subject.rows.state(message_id) == ("done", None, 1)
    assert subject.reads.settled_messages([message_id]) == [message_id]


def test_a_stale_claim_can_neither_answer_nor_fail_nor_release(subject: Subject) -> None:
    message_id = subject.rows.pending_message()
    stale = claimed(subject, message_id)
    subject.rows.expire_lease(message_id)
    current = claimed(subject, message_id)
    assert current.claim_token != stale.claim_token
    with pytest.raises(ClaimSuperseded):
        subject.run(subject.replies.complete_message_for_reply(stale, REPLY))
    assert not subject.run(subject.replies.fail_message(stale, "stale")).failed
    assert not subject.run(subject.replies.release_message(message_id, stale.claim_token))
    assert subject.rows.state(message_id) == ("processing", None, 2)
    stored = subject.run(subject.replies.complete_message_for_reply(current, REPLY))
    assert stored is not None
    # answered: the reply, whoever asks
    assert subject.run(subject.replies.complete_message_for_reply(stale, REPLY)) == stored


def test_a_failed_message_never_becomes_done(subject: Subject) -> None:
    message_id = subject.rows.pending_message()
    taken = claimed(subject, message_id)
    assert subject.run(subject.replies.fail_message(taken, "The AI model is busy.")).failed
    with pytest.raises(ClaimSuperseded):
        subject.run(subject.replies.complete_message_for_reply(taken, REPLY))
    assert subject.rows.state(message_id) == ("failed", "The AI model is busy.", 1)


def test_failing_a_claimed_message_shows_the_reason_and_never_overrides_a_reply(subject: Subject) -> None:
    failing, answered = subject.rows.pending_message("a"), subject.rows.pending_message("b")
    failing_claim, answered_claim = claimed(subject, failing), claimed(subject, answered)
    assert subject.run(subject.replies.fail_message(failing_claim, "The AI model is busy.")).failed
    subject.run(subject.replies.complete_message_for_reply(answered_claim, REPLY))
    assert not subject.run(subject.replies.fail_message(answered_claim, "too late")).failed
    assert subject.rows.state(failing) == ("failed", "The AI model is busy.", 1)
    assert subject.rows.state(answered) == ("done", None, 1)


def test_a_released_claim_is_claimable_at_once_without_spending_an_attempt(subject: Subject) -> None:
    message_id = subject.rows.pending_message()
    taken = claimed(subject, message_id)
    assert subject.run(subject.replies.release_message(message_id, taken.claim_token))
    assert not subject.run(subject.replies.release_message(message_id, taken.claim_token))  # no longer current
    again = claim(subject, message_id)
    assert again is not None and again.attempt == 1


def test_an_expired_lease_is_stalled_and_claimed_again(subject: Subject) -> None:
    message_id = subject.rows.pending_message()
    claimed(subject, message_id)
    assert message_id not in subject.reads.list_stalled_messages(30, 100)
    subject.rows.expire_lease(message_id)
    assert message_id in subject.reads.list_stalled_messages(30, 100)
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
    assert subject.reads.settled_messages([message_id]) == [message_id]


def test_a_function_the_database_does_not_have_is_our_bug_not_an_outage(
    postgrest_stores: tuple[PostgrestReplyStore, SupabaseMessageStore], engine: EngineLoop
) -> None:
    replies, reads = postgrest_stores
    with pytest.raises(StoreRejected, match=r"Supabase refused no_such_function \(PGRST202\)"):
        engine.run(replies._rpc("no_such_function", {}))
    with pytest.raises(StoreRejected, match=r"Supabase refused no_such_function \(PGRST202\)"):
        reads._rpc("no_such_function", {})


def test_a_later_message_waits_and_whoever_settles_the_earlier_names_it_next(subject: Subject) -> None:
    first, second, third = subject.rows.conversation("one", "two", "three")
    waiting = subject.run(subject.replies.claim_message_for_reply(second, LEASE, 5, BUDGET, MAX_MESSAGES))
    assert waiting == WaitingMessage(second, first)
    taken = claimed(subject, first)
    stored = subject.run(subject.replies.complete_message_for_reply(taken, ModelReply("Echo: one", "fake-model", None, None)))
    assert stored is not None and stored.next_message_id == second
    taken = claimed(subject, second)
    assert [item["content"] for item in taken.context] == ["one", "Echo: one", "two"]
    failed = subject.run(subject.replies.fail_message(taken, "The AI model is busy."))
    assert (failed.failed, failed.next_message_id) == (True, third)
    assert subject.rows.state(third) == ("pending", None, 0)


def test_a_claim_takes_the_token_its_caller_chose_and_is_released_by_it(subject: Subject) -> None:
    message_id = subject.rows.pending_message()
    token = "6f1c2a8e-8c3b-4a57-9d55-0c1f6a3f0b9e"
    taken = claim(subject, message_id, token=token)
    assert taken is not None and taken.claim_token == token
    assert subject.run(subject.replies.release_message(message_id, token))
    assert subject.rows.state(message_id) == ("processing", None, 0)


def test_the_sweep_lists_only_the_head_of_a_conversations_queue(subject: Subject) -> None:
    """Later messages wait and are handed on; re-driving them would be claims refused for nothing."""
    first, second = subject.rows.conversation("one", "two")
    claimed(subject, first)
    subject.rows.expire_lease(first)
    listed = subject.reads.list_stalled_messages(0, 10)
    assert first in listed and second not in listed


# --- streamed replies: begin, tick, finish -------------------------------------------------------


def test_a_streamed_reply_begins_is_checkpointed_by_the_tick_and_ends_done(subject: Subject) -> None:
    message_id = subject.rows.pending_message("hi")
    taken = claimed(subject, message_id)
    begun = subject.run(subject.replies.begin_reply(taken, "Ec"))
    assert begun.attempt == 1 and subject.rows.reply(message_id) == ("Ec", "streaming", 1)

    assert tick(subject, checkpoint(taken, "Echo:"), streaming=(message_id,)) == TickAnswer([], [])
    assert subject.rows.reply(message_id) == ("Echo:", "streaming", 1)

    whole = ModelReply("Echo: hi", "fake-model", 3, 2)
    outcome = subject.run(subject.replies.finish_reply(taken, "Echo: hi", "done", None, whole))
    assert outcome is not None
    assert (outcome.status, outcome.reply_id, outcome.reply) == ("done", begun.reply_id, "Echo: hi")
    assert subject.rows.reply(message_id) == ("Echo: hi", "done", 1)
    assert subject.rows.state(message_id) == ("done", None, 1)
    assert subject.reads.settled_messages([message_id]) == [message_id]


def test_the_tick_extends_the_lease_of_the_claims_it_checkpoints(subject: Subject) -> None:
    message_id = subject.rows.pending_message()
    taken = claimed(subject, message_id)
    subject.run(subject.replies.begin_reply(taken, "E"))
    assert subject.rows.lease_left(message_id) <= LEASE

    tick(subject, checkpoint(taken, "Ec"), lease=10 * LEASE)

    assert subject.rows.lease_left(message_id) > 9 * LEASE


@pytest.mark.parametrize(
    "arrange",
    [
        pytest.param("another_attempt", id="another attempt holds the message"),
        pytest.param("not_begun", id="claimed but no reply row yet"),
        pytest.param("failed", id="the message failed"),
        pytest.param("stopped", id="the reply ended stopped"),
    ],
)
def test_a_checkpoint_under_a_stale_claim_is_superseded_and_writes_nothing(subject: Subject, arrange: str) -> None:
    message_id = subject.rows.pending_message()
    stale = claimed(subject, message_id)
    if arrange != "not_begun":
        subject.run(subject.replies.begin_reply(stale, "A"))
    if arrange == "another_attempt":
        subject.rows.expire_lease(message_id)
        subject.run(subject.replies.begin_reply(claimed(subject, message_id), "B"))
    elif arrange == "failed":
        subject.run(subject.replies.fail_message(stale, "The AI model is busy."))
    elif arrange == "stopped":
        subject.run(subject.replies.finish_reply(stale, "A", "stopped", None, None))
    before = subject.rows.reply(message_id), subject.rows.state(message_id)

    assert tick(subject, checkpoint(stale, "A, later"), lease=10 * LEASE) == TickAnswer([message_id], [])

    assert (subject.rows.reply(message_id), subject.rows.state(message_id)) == before
    if arrange not in ("failed", "stopped"):
        assert subject.rows.lease_left(message_id) <= LEASE  # not extended


def test_one_tick_stores_the_current_claims_and_refuses_only_the_stale_ones(subject: Subject) -> None:
    current_id, stale_id = subject.rows.pending_message("a"), subject.rows.pending_message("b")
    current, stale = claimed(subject, current_id), claimed(subject, stale_id)
    subject.run(subject.replies.begin_reply(current, "A"))
    subject.run(subject.replies.begin_reply(stale, "B"))
    subject.rows.expire_lease(stale_id)
    subject.run(subject.replies.begin_reply(claimed(subject, stale_id), "b2"))
    unknown = ReplyCheckpoint("00000000-0000-4000-8000-0000000000aa", "00000000-0000-4000-8000-0000000000bb", "?")

    answer = tick(subject, checkpoint(current, "A, more"), checkpoint(stale, "B, more"), unknown)

    assert answer == TickAnswer(sorted([stale_id, unknown.message_id]), [])
    assert subject.rows.reply(current_id) == ("A, more", "streaming", 1)
    assert subject.rows.reply(stale_id) == ("b2", "streaming", 2)


def test_the_tick_reports_stop_requests_only_for_the_messages_it_asks_about(subject: Subject) -> None:
    asked, not_asked, elsewhere = (subject.rows.pending_message(text) for text in ("a", "b", "c"))
    claims = [claimed(subject, message_id) for message_id in (asked, not_asked, elsewhere)]
    for each in claims:
        subject.run(subject.replies.begin_reply(each, "E"))
    subject.rows.request_stop(asked)
    subject.rows.request_stop(elsewhere)

    answer = tick(subject, *(checkpoint(each, "Ec") for each in claims), streaming=(asked, not_asked))

    assert answer == TickAnswer([], [asked])
    assert [subject.rows.reply(each.message_id) for each in claims] == [("Ec", "streaming", 1)] * 3  # asking stops nothing


def test_an_empty_tick_answers_empty_lists(subject: Subject) -> None:
    assert subject.run(subject.replies.reply_tick([], [], LEASE)) == TickAnswer([], [])


def test_a_stale_claim_can_neither_begin_nor_finish_a_streamed_reply(subject: Subject) -> None:
    message_id = subject.rows.pending_message()
    stale = claimed(subject, message_id)
    subject.run(subject.replies.begin_reply(stale, "A"))
    subject.rows.expire_lease(message_id)
    current = claimed(subject, message_id)
    subject.run(subject.replies.begin_reply(current, "B"))

    with pytest.raises(ClaimSuperseded):
        subject.run(subject.replies.begin_reply(stale, "A again"))
    for status in ("stopped", "failed", "done"):
        with pytest.raises(ClaimSuperseded):
            subject.run(subject.replies.finish_reply(stale, "A, all of it", status, None, None))
    assert subject.rows.reply(message_id) == ("B", "streaming", 2)
    assert subject.rows.state(message_id) == ("processing", None, 2)


def test_a_stopped_stream_keeps_its_partial_text_and_is_settled(subject: Subject) -> None:
    message_id = subject.rows.pending_message("partial")
    taken = claimed(subject, message_id)
    begun = subject.run(subject.replies.begin_reply(taken, "Echo: "))

    outcome = subject.run(subject.replies.finish_reply(taken, "Echo: par", "stopped", None, None))

    assert outcome is not None
    assert (outcome.status, outcome.reply_id, outcome.reply) == ("stopped", begun.reply_id, "Echo: par")
    assert subject.rows.reply(message_id) == ("Echo: par", "stopped", 1)
    assert subject.reads.settled_messages([message_id]) == [message_id]


def test_a_stale_claim_finishing_after_the_current_attempt_is_refused(subject: Subject) -> None:
    """Unlike complete_message_for_reply (which answers the stored reply to whoever asks), a
    streamed reply's stale worker is told only that its claim is gone: it tells nobody anything."""
    message_id = subject.rows.pending_message()
    stale = claimed(subject, message_id)
    subject.run(subject.replies.begin_reply(stale, "A"))
    subject.rows.expire_lease(message_id)
    current = claimed(subject, message_id)
    subject.run(subject.replies.begin_reply(current, "B"))
    subject.run(subject.replies.finish_reply(current, "B, all", "done", None, None))

    with pytest.raises(ClaimSuperseded):
        subject.run(subject.replies.finish_reply(stale, "A, all", "done", None, None))
    assert subject.rows.reply(message_id) == ("B, all", "done", 2)


# --- the operator's gauge ------------------------------------------------------------------------


def test_pending_messages_are_counted_and_a_claimed_one_is_not(subject: Subject) -> None:
    before = subject.reads.count_pending_messages()
    first = subject.rows.pending_message("one")
    subject.rows.pending_message("two")
    assert subject.reads.count_pending_messages() == before + 2
    claimed(subject, first)
    assert subject.reads.count_pending_messages() == before + 1


# --- titles --------------------------------------------------------------------------------------


def test_a_conversation_is_claimed_for_a_title_once_after_its_first_answer_and_never_retitled(
    subject: Subject,
) -> None:
    message_id = subject.rows.pending_message("hello")
    taken = claimed(subject, message_id)
    assert subject.run(subject.replies.claim_conversation_title(taken.conversation_id)) is None  # nothing answered yet
    subject.run(subject.replies.complete_message_for_reply(taken, REPLY))
    request = subject.run(subject.replies.claim_conversation_title(taken.conversation_id))
    assert request is not None and request.user_id == taken.user_id
    assert request.messages == [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "Echo: hello"}]
    assert subject.run(subject.replies.claim_conversation_title(taken.conversation_id)) is None  # once
    assert subject.run(subject.replies.set_conversation_title(taken.conversation_id, ' "Greeting" ', 5)) is True
    assert subject.run(subject.replies.set_conversation_title(taken.conversation_id, "Another", 5)) is False
    assert subject.rows.title(taken.conversation_id) == "Greeting"
