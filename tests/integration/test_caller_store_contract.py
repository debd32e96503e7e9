"""One contract, two implementations of chat.ports.CallerStore: the production adapter
(PostgrestCallerStore, supabase-py's PostgREST client under row-level security, as a user signed
up through the gateway) and the in-memory fake the unit tests use (InMemoryCallerStore). Every
row runs against both, so the fake cannot drift from what RLS and the SQL functions do.

The service side is arranged through chat.ports.ReplyStore (contract-tested in
test_message_store_contract.py): a message claimed, streaming, answered or failed, as a worker
leaves it. One test per CallerStore method (then its error contract), so a new method is new rows."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
import pytest

from adapters.caller_store import caller_store_factory
from adapters.message_store import shared_http_client
from adapters.postgrest_errors import DATA_REFUSED_MESSAGE
from chat.caller import Caller
from chat.errors import (
    ConversationNotFound,
    CursorNotFound,
    DuplicateClientMessage,
    InvalidRequest,
    MessageNotFound,
)
from chat.ports import (
    CallerStore,
    CallerStoreFactory,
    ClaimedMessage,
    ModelReply,
    ReplyCheckpoint,
    ReplyProgress,
    ReplyStore,
    TickAnswer,
)
from devstack.stack import LocalStack
from tests.support.engine_loop import EngineLoop
from tests.support.fakes import InMemoryDatabase, InMemoryMessageStore, caller_stores
from tests.support.users import SignedUpUser

LEASE = 60
T = TypeVar("T")
MISSING = "00000000-0000-4000-8000-00000000abcd"  # a well-formed id that names nothing
# What the doors pass on: a history row's and a conversation's fields (a listed one has no user_id).
HISTORY_COLUMNS = {"id", "role", "content", "status", "error", "reply_to", "created_at", "seq"}
CONVERSATION_COLUMNS = {"id", "user_id", "title", "system_prompt", "model", "created_at", "updated_at", "title_requested_at"}
LISTED_COLUMNS = CONVERSATION_COLUMNS - {"user_id", "title_requested_at"}  # what list_conversations shows


@dataclass
class Subject:
    alice: CallerStore
    bob: CallerStore  # another user, who must see nothing of alice's
    service: ReplyStore  # the workers' side, to move alice's messages on
    expire_lease: Callable[[str], None]
    engine: EngineLoop

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.engine.run(coroutine)



@pytest.fixture(scope="module")
def postgrest_callers(stack: LocalStack, engine: EngineLoop) -> Iterator[tuple[CallerStoreFactory, ReplyStore]]:
    environment = stack.service_environment()
    http = shared_http_client(8)
    yield (
        caller_store_factory(environment["SUPABASE_URL"], environment["SUPABASE_ANON_KEY"], http),
        engine.reply_store(environment["SUPABASE_URL"], environment["SUPABASE_SERVICE_ROLE_KEY"]),
    )
    http.close()


@pytest.fixture(params=["postgrest", "in_memory"])
def subject(request: pytest.FixtureRequest, engine: EngineLoop) -> Subject:
    if request.param == "in_memory":
        database = InMemoryDatabase()
        open_for, _ = caller_stores(database)

        def expire_in_memory(message_id: str) -> None:
            database.messages[message_id].lease_expires_at = database.clock() - 1

        alice, bob = (Caller(str(uuid.uuid4()), "token") for _ in range(2))
        return Subject(open_for(alice), open_for(bob), InMemoryMessageStore(database), expire_in_memory, engine)
    open_postgrest, service = request.getfixturevalue("postgrest_callers")
    db: psycopg.Connection = request.getfixturevalue("db")
    db.execute("delete from private.webhook_config")  # nothing is delivered: this test's workers are its own

    def expire_in_postgres(message_id: str) -> None:
        db.execute("update public.messages set lease_expires_at = now() - interval '1 s' where id = %s", (message_id,))

    users: list[SignedUpUser] = [request.getfixturevalue("alice"), request.getfixturevalue("bob")]
    alice, bob = (open_postgrest(Caller(user.user_id, user.access_token)) for user in users)
    return Subject(alice, bob, service, expire_in_postgres, engine)


def conversation(store: CallerStore, **fields: Any) -> str:
    return str(store.create_conversation(fields)["id"])


def sent(subject: Subject, conversation_id: str, content: str = "hello", client_message_id: str | None = None) -> str:
    return subject.alice.insert_message(str(uuid.uuid4()), conversation_id, content, client_message_id)


def claimed(subject: Subject, message_id: str) -> ClaimedMessage:
    taken = subject.run(subject.service.claim_message_for_reply(message_id, LEASE, 5, 6000, 200))
    assert isinstance(taken, ClaimedMessage), taken
    return taken


def answered(subject: Subject, message_id: str, text: str) -> str:
    stored = subject.run(subject.service.complete_message_for_reply(
        claimed(subject, message_id), ModelReply(text, "fake-model", 3, 2)
    ))
    assert stored is not None
    return stored.reply_id


def streaming(subject: Subject, message_id: str, text: str) -> tuple[ClaimedMessage, str]:
    taken = claimed(subject, message_id)
    return taken, subject.run(subject.service.begin_reply(taken, text)).reply_id


def checkpoint(claim: ClaimedMessage, content: str) -> ReplyCheckpoint:
    return ReplyCheckpoint(claim.message_id, claim.claim_token, content)


def history(subject: Subject, conversation_id: str, before: str | None = None, page_size: int = 50) -> list[tuple[str, str, str]]:
    page = subject.alice.conversation_history(conversation_id, before, page_size)
    return [(item["role"], item["content"], item["status"]) for item in page["messages"]]


# --- insert_message and find_client_message ------------------------------------------------------


def test_an_inserted_message_is_pending_under_the_id_chosen_for_it(subject: Subject) -> None:
    conversation_id = conversation(subject.alice)
    message_id = str(uuid.uuid4())
    assert subject.alice.insert_message(message_id, conversation_id, "hello", None) == message_id
    outcome = subject.alice.message_outcome(message_id)
    assert outcome is not None
    assert (outcome.message_id, outcome.conversation_id, outcome.status, outcome.reply_id) == (
        message_id, conversation_id, "pending", None
    )


def test_a_client_message_id_is_used_once_per_user_whatever_the_conversation(subject: Subject) -> None:
    first, second = conversation(subject.alice), conversation(subject.alice)
    key = str(uuid.uuid4())
    original = sent(subject, first, "once", key)
    for conversation_id in (first, second):
        with pytest.raises(DuplicateClientMessage):
            sent(subject, conversation_id, "again", key)
    assert subject.alice.find_client_message(key) == (original, first)
    assert [content for _, content, _ in history(subject, first)] == ["once"]
    # another user's keys are theirs: the same one is free for bob
    bobs = conversation(subject.bob)
    bobs_message = subject.bob.insert_message(str(uuid.uuid4()), bobs, "mine", key)
    assert subject.bob.find_client_message(key) == (bobs_message, bobs)
    assert subject.alice.find_client_message(key) == (original, first)


def test_a_client_message_id_nobody_used_finds_nothing(subject: Subject) -> None:
    sent(subject, conversation(subject.alice), "no key")
    assert subject.alice.find_client_message(str(uuid.uuid4())) is None


@pytest.mark.parametrize(
    "content", [pytest.param("", id="empty"), pytest.param("x" * 32001, id="longer than 32000 characters")]
)
def test_a_message_the_database_refuses_is_an_invalid_request(subject: Subject, content: str) -> None:
    conversation_id = conversation(subject.alice)
    with pytest.raises(InvalidRequest, match=re.escape(DATA_REFUSED_MESSAGE)):
        sent(subject, conversation_id, content)
    assert history(subject, conversation_id) == []


# --- message_outcome -----------------------------------------------------------------------------


def test_the_outcome_follows_the_message_to_its_reply(subject: Subject) -> None:
    conversation_id = conversation(subject.alice)
    message_id = sent(subject, conversation_id, "hi")
    reply_id = answered(subject, message_id, "Echo: hi")
    outcome = subject.alice.message_outcome(message_id)
    assert outcome is not None
    assert (outcome.status, outcome.error, outcome.reply_id, outcome.reply, outcome.settled) == (
        "done", None, reply_id, "Echo: hi", True
    )


def test_the_outcome_of_a_failed_message_carries_its_reason(subject: Subject) -> None:
    message_id = sent(subject, conversation(subject.alice))
    subject.run(subject.service.fail_message(claimed(subject, message_id), "The AI model is busy."))
    outcome = subject.alice.message_outcome(message_id)
    assert outcome is not None
    assert (outcome.status, outcome.error, outcome.reply_id, outcome.settled) == (
        "failed", "The AI model is busy.", None, True
    )


def test_the_outcome_of_a_reply_being_streamed_is_its_text_so_far_and_unsettled(subject: Subject) -> None:
    message_id = sent(subject, conversation(subject.alice))
    _, reply_id = streaming(subject, message_id, "Ech")
    outcome = subject.alice.message_outcome(message_id)
    assert outcome is not None
    assert (outcome.status, outcome.reply_id, outcome.reply, outcome.settled) == ("processing", reply_id, "Ech", False)


def test_no_outcome_for_someone_elses_message_or_a_missing_one(subject: Subject) -> None:
    message_id = sent(subject, conversation(subject.alice))
    assert subject.bob.message_outcome(message_id) is None
    assert subject.alice.message_outcome(MISSING) is None


# --- latest_user_message -------------------------------------------------------------------------


def test_the_latest_user_message_is_the_last_sent_with_its_status(subject: Subject) -> None:
    conversation_id = conversation(subject.alice)
    assert subject.alice.latest_user_message(conversation_id) is None
    first = sent(subject, conversation_id, "one")
    answered(subject, first, "Echo: one")  # its reply comes after it, and is not a user message
    assert subject.alice.latest_user_message(conversation_id) == (first, "done")
    second = sent(subject, conversation_id, "two")
    assert subject.alice.latest_user_message(conversation_id) == (second, "pending")
    claimed(subject, second)
    assert subject.alice.latest_user_message(conversation_id) == (second, "processing")


def test_no_latest_user_message_in_someone_elses_conversation_or_a_missing_one(subject: Subject) -> None:
    conversation_id = conversation(subject.alice)
    sent(subject, conversation_id)
    assert subject.bob.latest_user_message(conversation_id) is None
    assert subject.alice.latest_user_message(MISSING) is None


# --- reply_progress ------------------------------------------------------------------------------


def test_reply_progress_from_pending_through_streaming_to_done(subject: Subject) -> None:
    message_id = sent(subject, conversation(subject.alice))
    assert subject.alice.reply_progress(message_id) == ReplyProgress("pending", None, None, None, None)
    taken, reply_id = streaming(subject, message_id, "Ec")
    assert subject.alice.reply_progress(message_id) == ReplyProgress("processing", reply_id, "Ec", 1, None)
    subject.run(subject.service.reply_tick([checkpoint(taken, "Echo:")], [], LEASE))
    assert subject.alice.reply_progress(message_id) == ReplyProgress("processing", reply_id, "Echo:", 1, None)
    subject.run(subject.service.finish_reply(taken, "Echo: hello", "done", None, ModelReply("Echo: hello", "m", 3, 2)))
    assert subject.alice.reply_progress(message_id) == ReplyProgress("done", reply_id, "Echo: hello", 1, None)


def test_reply_progress_of_a_reply_written_whole(subject: Subject) -> None:
    message_id = sent(subject, conversation(subject.alice))
    reply_id = answered(subject, message_id, "Echo: hello")
    # no attempt: the row was never streamed, so a follower has no text of an attempt to extend
    assert subject.alice.reply_progress(message_id) == ReplyProgress("done", reply_id, "Echo: hello", None, None)


def test_reply_progress_of_a_second_attempt_names_it(subject: Subject) -> None:
    message_id = sent(subject, conversation(subject.alice))
    _, reply_id = streaming(subject, message_id, "first try")
    subject.expire_lease(message_id)
    streaming(subject, message_id, "second")
    assert subject.alice.reply_progress(message_id) == ReplyProgress("processing", reply_id, "second", 2, None)


def test_reply_progress_of_a_failed_message_carries_its_reason(subject: Subject) -> None:
    message_id = sent(subject, conversation(subject.alice))
    subject.run(subject.service.fail_message(claimed(subject, message_id), "The AI model is busy."))
    assert subject.alice.reply_progress(message_id) == ReplyProgress("failed", None, None, None, "The AI model is busy.")


def test_no_reply_progress_for_someone_elses_message_or_a_missing_one(subject: Subject) -> None:
    message_id = sent(subject, conversation(subject.alice))
    assert subject.bob.reply_progress(message_id) is None
    assert subject.alice.reply_progress(MISSING) is None


# --- stop_reply ----------------------------------------------------------------------------------


def test_stopping_a_pending_message_settles_it_at_once(subject: Subject) -> None:
    message_id = sent(subject, conversation(subject.alice))
    assert subject.alice.stop_reply(message_id) == "stopped"
    outcome = subject.alice.message_outcome(message_id)
    assert outcome is not None and (outcome.status, outcome.settled) == ("stopped", True)


def test_stopping_a_reply_being_generated_asks_its_worker(subject: Subject) -> None:
    message_id = sent(subject, conversation(subject.alice))
    taken, reply_id = streaming(subject, message_id, "Ec")
    assert subject.alice.stop_reply(message_id) == "processing"
    answer = subject.run(subject.service.reply_tick([checkpoint(taken, "Echo")], [message_id], LEASE))
    assert answer == TickAnswer([], [message_id])
    assert subject.alice.reply_progress(message_id) == ReplyProgress("processing", reply_id, "Echo", 1, None)


def test_stopping_a_reply_whose_worker_died_settles_it_with_its_text(subject: Subject) -> None:
    message_id = sent(subject, conversation(subject.alice))
    _, reply_id = streaming(subject, message_id, "Ec")
    subject.expire_lease(message_id)
    assert subject.alice.stop_reply(message_id) == "stopped"
    outcome = subject.alice.message_outcome(message_id)
    assert outcome is not None
    assert (outcome.status, outcome.reply_id, outcome.reply) == ("stopped", reply_id, "Ec")
    assert subject.alice.latest_user_message(outcome.conversation_id) == (message_id, "stopped")


def test_stopping_a_settled_message_leaves_it(subject: Subject) -> None:
    message_id = sent(subject, conversation(subject.alice))
    reply_id = answered(subject, message_id, "Echo: hello")
    assert subject.alice.stop_reply(message_id) == "done"
    outcome = subject.alice.message_outcome(message_id)
    assert outcome is not None and (outcome.status, outcome.reply_id) == ("done", reply_id)


def test_stopping_someone_elses_message_or_a_missing_one_is_not_found(subject: Subject) -> None:
    conversation_id = conversation(subject.alice)
    message_id = sent(subject, conversation_id)
    for store, target in ((subject.bob, message_id), (subject.alice, MISSING)):
        with pytest.raises(MessageNotFound):
            store.stop_reply(target)
    assert subject.alice.latest_user_message(conversation_id) == (message_id, "pending")


# --- conversation_history ------------------------------------------------------------------------


def test_history_reads_each_message_then_its_reply_oldest_first(subject: Subject) -> None:
    conversation_id = conversation(subject.alice)
    first, second, third = (sent(subject, conversation_id, text) for text in ("one", "two", "three"))
    answered(subject, first, "Echo: one")
    subject.run(subject.service.fail_message(claimed(subject, second), "The AI model is busy."))
    streaming(subject, third, "Echo: th")
    page = subject.alice.conversation_history(conversation_id, None, 50)
    assert page["next_before"] is None
    assert [(m["id"], m["role"], m["content"], m["status"], m["error"]) for m in page["messages"]] == [
        (first, "user", "one", "done", None),
        (page["messages"][1]["id"], "assistant", "Echo: one", "done", None),
        (second, "user", "two", "failed", "The AI model is busy."),
        (third, "user", "three", "processing", None),
        (page["messages"][4]["id"], "assistant", "Echo: th", "streaming", None),
    ]
    assert [m["reply_to"] for m in page["messages"]] == [None, first, None, None, third]
    assert all(set(m) == HISTORY_COLUMNS for m in page["messages"])


def test_history_pages_back_from_the_newest(subject: Subject) -> None:
    conversation_id = conversation(subject.alice)
    for text in ("one", "two", "three", "four", "five"):
        sent(subject, conversation_id, text)
    newest = subject.alice.conversation_history(conversation_id, None, 2)
    assert [m["content"] for m in newest["messages"]] == ["four", "five"]
    assert newest["next_before"] == newest["messages"][0]["id"]
    middle = subject.alice.conversation_history(conversation_id, newest["next_before"], 2)
    assert [m["content"] for m in middle["messages"]] == ["two", "three"]
    oldest = subject.alice.conversation_history(conversation_id, middle["next_before"], 2)
    assert ([m["content"] for m in oldest["messages"]], oldest["next_before"]) == (["one"], None)


def test_history_of_an_empty_conversation_is_an_empty_page(subject: Subject) -> None:
    assert subject.alice.conversation_history(conversation(subject.alice), None, 50) == {"messages": [], "next_before": None}


def test_a_history_cursor_naming_no_message_of_the_conversation_is_not_found(subject: Subject) -> None:
    conversation_id, other = conversation(subject.alice), conversation(subject.alice)
    sent(subject, conversation_id)
    elsewhere = sent(subject, other)
    for cursor in (MISSING, elsewhere):
        with pytest.raises(CursorNotFound):
            subject.alice.conversation_history(conversation_id, cursor, 50)


def test_no_history_of_someone_elses_conversation_or_a_missing_one(subject: Subject) -> None:
    conversation_id = conversation(subject.alice)
    sent(subject, conversation_id)
    for store, target in ((subject.bob, conversation_id), (subject.alice, MISSING)):
        with pytest.raises(ConversationNotFound):
            store.conversation_history(target, None, 50)


# --- create, list, get, delete conversations -----------------------------------------------------


def test_a_created_conversation_is_the_callers_with_the_fields_given(subject: Subject) -> None:
    created = subject.alice.create_conversation({"title": "Plans", "system_prompt": "Be brief.", "model": None})
    fetched = subject.alice.get_conversation(created["id"])
    for row in (created, fetched):
        assert (row["title"], row["system_prompt"], row["model"]) == ("Plans", "Be brief.", None)
        assert set(row) == CONVERSATION_COLUMNS
    assert created["user_id"] == fetched["user_id"] != subject.bob.create_conversation({})["user_id"]
    assert (created["id"], created["user_id"]) == (fetched["id"], fetched["user_id"])


def test_a_conversation_created_with_no_fields_has_them_empty(subject: Subject) -> None:
    created = subject.alice.create_conversation({})
    fetched = subject.alice.get_conversation(created["id"])
    assert (fetched["title"], fetched["system_prompt"], fetched["model"]) == (None, None, None)


def test_the_listing_is_the_callers_own_newest_first_in_pages(subject: Subject) -> None:
    first, second, third = (conversation(subject.alice, title=title) for title in ("one", "two", "three"))
    conversation(subject.bob, title="bob's")
    newest = subject.alice.list_conversations(None, 2)
    assert [c["id"] for c in newest["conversations"]] == [third, second]
    assert [c["title"] for c in newest["conversations"]] == ["three", "two"]
    assert all(set(c) == LISTED_COLUMNS for c in newest["conversations"])
    assert newest["next_before"] == second
    rest = subject.alice.list_conversations(newest["next_before"], 2)
    assert ([c["id"] for c in rest["conversations"]], rest["next_before"]) == ([first], None)


def test_a_listing_cursor_naming_none_of_the_callers_conversations_is_not_found(subject: Subject) -> None:
    conversation(subject.alice)
    bobs = conversation(subject.bob)
    for cursor in (MISSING, bobs):
        with pytest.raises(CursorNotFound):
            subject.alice.list_conversations(cursor, 10)


def test_an_empty_listing(subject: Subject) -> None:
    conversation(subject.bob)
    assert subject.alice.list_conversations(None, 10) == {"conversations": [], "next_before": None}


def test_someone_elses_conversation_or_a_missing_one_is_not_found(subject: Subject) -> None:
    conversation_id = conversation(subject.alice)
    for store, target in ((subject.bob, conversation_id), (subject.alice, MISSING)):
        with pytest.raises(ConversationNotFound):
            store.get_conversation(target)


def test_deleting_a_conversation_takes_its_messages_with_it(subject: Subject) -> None:
    conversation_id, kept = conversation(subject.alice), conversation(subject.alice)
    message_id = sent(subject, conversation_id)
    answered(subject, message_id, "Echo: hello")
    subject.alice.delete_conversation(conversation_id)
    with pytest.raises(ConversationNotFound):
        subject.alice.get_conversation(conversation_id)
    assert subject.alice.message_outcome(message_id) is None
    assert [c["id"] for c in subject.alice.list_conversations(None, 10)["conversations"]] == [kept]
    with pytest.raises(ConversationNotFound):
        subject.alice.delete_conversation(conversation_id)  # gone: a second delete finds nothing


def test_deleting_someone_elses_conversation_or_a_missing_one_is_not_found_and_changes_nothing(subject: Subject) -> None:
    conversation_id = conversation(subject.alice)
    message_id = sent(subject, conversation_id)
    for store, target in ((subject.bob, conversation_id), (subject.alice, MISSING)):
        with pytest.raises(ConversationNotFound):
            store.delete_conversation(target)
    assert subject.alice.get_conversation(conversation_id)["id"] == conversation_id
    assert subject.alice.latest_user_message(conversation_id) == (message_id, "pending")


# --- the error contract across methods -----------------------------------------------------------


def test_sending_into_someone_elses_conversation_or_a_missing_one_is_not_found(subject: Subject) -> None:
    conversation_id = conversation(subject.alice)
    for store, target in ((subject.bob, conversation_id), (subject.alice, MISSING)):
        with pytest.raises(ConversationNotFound):
            store.insert_message(str(uuid.uuid4()), target, "let me in", None)
    assert history(subject, conversation_id) == []


CALLS_WITH_AN_ID: list[Any] = [
    pytest.param(lambda store, bad: store.insert_message(str(uuid.uuid4()), bad, "hi", None), id="insert_message"),
    pytest.param(lambda store, bad: store.find_client_message(bad), id="find_client_message"),
    pytest.param(lambda store, bad: store.message_outcome(bad), id="message_outcome"),
    pytest.param(lambda store, bad: store.latest_user_message(bad), id="latest_user_message"),
    pytest.param(lambda store, bad: store.reply_progress(bad), id="reply_progress"),
    pytest.param(lambda store, bad: store.stop_reply(bad), id="stop_reply"),
    pytest.param(lambda store, bad: store.conversation_history(bad, None, 50), id="conversation_history"),
    pytest.param(lambda store, bad: store.list_conversations(bad, 50), id="list_conversations cursor"),
    pytest.param(lambda store, bad: store.get_conversation(bad), id="get_conversation"),
    pytest.param(lambda store, bad: store.delete_conversation(bad), id="delete_conversation"),
]


@pytest.mark.parametrize("call", CALLS_WITH_AN_ID)
def test_an_id_that_is_not_a_uuid_is_an_invalid_request(
    subject: Subject, call: Callable[[CallerStore, str], object]
) -> None:
    """The doors turn a malformed id into 404 before the store sees it; the store itself refuses it."""
    with pytest.raises(InvalidRequest, match=re.escape(DATA_REFUSED_MESSAGE)):
        call(subject.alice, "not-a-uuid")
