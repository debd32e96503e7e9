"""POST /api/chat's domain verb, in process: the reply, the timeout and the failure a caller is
told, a retried client_message_id answered from the first request, and the rate limit."""

from __future__ import annotations

import threading
import uuid

import pytest

from chat.caller import Caller
from chat.errors import ClientMessageConflict, ModelRejected, RateLimited, ReplyFailed, ReplyTimeout
from tests.support.fakes import InMemoryCallerStore
from tests.support.in_process import FakeChat, fake_chat, unit_settings
from tests.support.polling import wait_until

ALICE = Caller("alice", "alice-token")


def chat_with_conversation(**settings: object) -> tuple[FakeChat, str]:
    chat = fake_chat(unit_settings(**settings))
    return chat, chat.database.add_conversation(ALICE.user_id)


def alices_store(chat: FakeChat) -> InMemoryCallerStore:
    store = chat.service.caller_store(ALICE)
    assert isinstance(store, InMemoryCallerStore)
    return store


def test_the_reply_comes_back_to_the_caller() -> None:
    chat, conversation_id = chat_with_conversation()
    reply = chat.service.send_message(ALICE, conversation_id, "hi", None)
    assert (reply.conversation_id, reply.response) == (conversation_id, "Echo: hi")
    row = chat.database.messages[reply.message_id]
    assert row.reply is not None and row.reply.reply_id == reply.reply_id


def test_no_reply_within_the_wait_is_a_timeout_naming_the_kept_message() -> None:
    chat, conversation_id = chat_with_conversation(chat_reply_timeout_seconds=0.1)
    chat.model.gate = threading.Event()
    with pytest.raises(ReplyTimeout) as timeout:
        chat.service.send_message(ALICE, conversation_id, "slow", None)
    assert chat.database.messages[timeout.value.message_id].status == "processing"
    chat.model.gate.set()
    wait_until(lambda: chat.database.messages[timeout.value.message_id].status == "done")  # the reply still comes


def test_a_failed_message_is_a_reply_failed_with_the_stored_reason() -> None:
    chat, conversation_id = chat_with_conversation()
    chat.model.script.append(ModelRejected("The AI model rejected this conversation (400): too long."))
    with pytest.raises(ReplyFailed) as failed:
        chat.service.send_message(ALICE, conversation_id, "hi", None)
    assert failed.value.error == "The AI model rejected this conversation (400): too long."
    assert chat.database.messages[failed.value.message_id].status == "failed"


def test_a_retried_client_message_id_returns_the_first_reply_without_asking_the_model_again() -> None:
    chat, conversation_id = chat_with_conversation()
    client_message_id = str(uuid.uuid4())
    first = chat.service.send_message(ALICE, conversation_id, "hi", client_message_id)
    again = chat.service.send_message(ALICE, conversation_id, "hi", client_message_id)
    assert again == first
    assert len(chat.model.prompts) == 1


def test_a_retry_while_the_first_is_still_generating_waits_for_the_same_reply() -> None:
    chat, conversation_id = chat_with_conversation()
    client_message_id = str(uuid.uuid4())
    chat.model.gate = threading.Event()
    replies = []
    first = threading.Thread(target=lambda: replies.append(
        chat.service.send_message(ALICE, conversation_id, "hi", client_message_id)))
    first.start()
    wait_until(lambda: chat.model.prompts)
    threading.Timer(0.1, chat.model.gate.set).start()
    replies.append(chat.service.send_message(ALICE, conversation_id, "hi", client_message_id))
    first.join(5)
    assert len(replies) == 2 and replies[0] == replies[1]
    assert len(chat.model.prompts) == 1


def test_a_client_message_id_from_another_conversation_is_a_conflict() -> None:
    chat, conversation_id = chat_with_conversation()
    other = chat.database.add_conversation(ALICE.user_id)
    client_message_id = str(uuid.uuid4())
    chat.service.send_message(ALICE, conversation_id, "hi", client_message_id)
    with pytest.raises(ClientMessageConflict):
        chat.service.send_message(ALICE, other, "hi", client_message_id)


def test_an_insert_refused_by_the_quota_is_rate_limited_and_nothing_is_inserted() -> None:
    """The limits are the database's: the insert is refused there, and the caller is told so."""
    chat, conversation_id = chat_with_conversation()
    alices_store(chat).fail_next("insert_message", RateLimited(17, "Too many messages: at most 5 per 60 s.", "w"))
    with pytest.raises(RateLimited) as limited:
        chat.service.send_message(ALICE, conversation_id, "hi", None)
    assert (limited.value.retry_after_seconds, limited.value.limit) == (17, "w")
    assert chat.database.messages == {}
