"""Conversation titles, in process on fakes: a conversation's first answered turn gets one title
from the title model, written beside the replies and never in their way; a title its owner set
is kept; a failure leaves the conversation untitled and its reply as it was."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from chat.answering.titles import MAX_TITLE_CHARS, clean_title, title_prompt
from chat.caller import Caller
from chat.errors import ModelUnavailable, StoreUnavailable
from chat.ports import ModelReply
from tests.support.in_process import FakeChat, fake_chat, unit_settings
from tests.support.polling import wait_until

ALICE = Caller("alice", "alice-token")
TITLE_MODEL = "title-model"


@pytest.fixture
def chat() -> Iterator[FakeChat]:
    running = fake_chat(unit_settings(generate_titles=True, openai_title_model=TITLE_MODEL, title_max_tokens=12))
    yield running
    for gate in running.model.gates.values():
        gate.set()
    running.service.close()


def titles_settled(chat: FakeChat) -> bool:
    titles = chat.service.pipeline.titles
    return titles is not None and titles.pending() == 0


def test_a_first_reply_leads_to_one_title_from_the_title_model(chat: FakeChat) -> None:
    conversation_id = chat.database.add_conversation(ALICE.user_id)
    chat.model.script.extend([
        ModelReply("Paris, mostly.", "default-model", 3, 2),
        ModelReply('"Travel plans for Paris."\nAnything else?', TITLE_MODEL, 40, 6),
    ])
    assert chat.service.send_message(ALICE, conversation_id, "Where should I go?", None).response == "Paris, mostly."
    wait_until(lambda: chat.database.conversations[conversation_id].fields.get("title"))
    chat.service.send_message(ALICE, conversation_id, "And then?", None)
    wait_until(lambda: titles_settled(chat))
    assert chat.database.conversations[conversation_id].fields["title"] == "Travel plans for Paris"
    assert chat.model.calls == [("default-model", None), (TITLE_MODEL, 12), ("default-model", None)]
    assert chat.database.tokens[ALICE.user_id] == 46  # the title's prompt and completion, counted for its owner
    assert chat.store.calls.count("claim_conversation_title") == 1  # a later turn does not ask again
    assert "Where should I go?" in chat.model.prompts[1][-1]["content"]


def test_a_title_the_user_set_is_never_replaced(chat: FakeChat) -> None:
    conversation_id = chat.database.add_conversation(ALICE.user_id, title="Mine")
    chat.service.send_message(ALICE, conversation_id, "hi", None)
    wait_until(lambda: "claim_conversation_title" in chat.store.calls and titles_settled(chat))
    assert chat.database.conversations[conversation_id].fields["title"] == "Mine"
    assert [model for model, _ in chat.model.calls] == ["default-model"]


def test_a_title_set_by_its_owner_while_the_model_writes_one_is_kept(chat: FakeChat) -> None:
    conversation_id = chat.database.add_conversation(ALICE.user_id)
    chat.model.gates[TITLE_MODEL] = threading.Event()
    chat.service.send_message(ALICE, conversation_id, "hi", None)
    wait_until(lambda: len(chat.model.calls) == 2)
    chat.database.conversations[conversation_id].fields["title"] = "Renamed by me"
    chat.model.gates[TITLE_MODEL].set()
    wait_until(lambda: "set_conversation_title" in chat.store.calls and titles_settled(chat))
    assert chat.database.conversations[conversation_id].fields["title"] == "Renamed by me"
    assert chat.database.tokens[ALICE.user_id] == 5  # its tokens are counted all the same


@pytest.mark.parametrize(
    ("fail",),
    [
        pytest.param(lambda chat: chat.model.script.extend([ModelReply("ok", "default-model", 3, 2),
                                                            ModelUnavailable("busy")]), id="the model fails"),
        pytest.param(lambda chat: chat.store.fail_next("set_conversation_title", StoreUnavailable("down")),
                     id="the store fails"),
        pytest.param(lambda chat: chat.model.script.extend([ModelReply("ok", "default-model", 3, 2),
                                                            RuntimeError("bug")]), id="an unexpected error"),
    ],
)
def test_a_title_failure_leaves_the_reply_done_and_the_title_unset(chat: FakeChat, fail: object) -> None:
    conversation_id = chat.database.add_conversation(ALICE.user_id)
    fail(chat)  # type: ignore[operator]
    reply = chat.service.send_message(ALICE, conversation_id, "hi", None)
    wait_until(lambda: len(chat.model.calls) == 2 and titles_settled(chat))
    assert chat.database.messages[reply.message_id].status == "done"
    assert chat.database.conversations[conversation_id].fields.get("title") is None


def test_no_title_without_tokens_left(chat: FakeChat) -> None:
    conversation_id = chat.database.add_conversation(ALICE.user_id)
    chat.database.tokens[ALICE.user_id] = chat.database.tokens_per_day
    chat.service.send_message(ALICE, conversation_id, "hi", None)
    wait_until(lambda: "claim_conversation_title" in chat.store.calls and titles_settled(chat))
    assert chat.database.conversations[conversation_id].fields.get("title") is None
    assert len(chat.model.calls) == 1


def test_a_title_being_written_does_not_hold_up_the_next_message(chat: FakeChat) -> None:
    """The second message waits for the first, and is handed on as the first is stored: while
    the first turn's title is still with the model."""
    conversation_id = chat.database.add_conversation(ALICE.user_id)
    chat.model.gates[TITLE_MODEL] = threading.Event()
    store = chat.service.caller_store(ALICE)
    first, second = "00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002"
    store.insert_message(first, conversation_id, "one", None)
    store.insert_message(second, conversation_id, "two", None)
    wait_until(lambda: chat.database.messages[second].status == "done")
    assert (TITLE_MODEL, 12) in chat.model.calls
    assert not chat.model.gates[TITLE_MODEL].is_set() and not titles_settled(chat)
    assert chat.database.conversations[conversation_id].fields.get("title") is None


def test_titles_can_be_turned_off() -> None:
    chat = fake_chat(unit_settings(generate_titles=False))
    try:
        conversation_id = chat.database.add_conversation(ALICE.user_id)
        chat.service.send_message(ALICE, conversation_id, "hi", None)
        assert chat.service.pipeline.titles is None
        assert "claim_conversation_title" not in chat.store.calls
    finally:
        chat.service.close()


@pytest.mark.parametrize(
    ("answer", "title"),
    [
        pytest.param("Trip to Paris", "Trip to Paris", id="as it should be"),
        pytest.param('"Trip to Paris."', "Trip to Paris", id="quoted, with a full stop"),
        pytest.param("Title: **Trip to Paris**", "Trip to Paris", id="labelled, in Markdown"),
        pytest.param("\n\n“Trip  to\tParis”\nHere is why: ...", "Trip to Paris", id="first line, spaces collapsed"),
        pytest.param("word " * 40, ("word " * 16).strip(), id="cut at a word"),
        pytest.param('""\n', "", id="nothing left"),
    ],
)
def test_the_models_answer_is_cleaned_to_one_short_line(answer: str, title: str) -> None:
    assert clean_title(answer) == title
    assert len(clean_title(answer)) <= MAX_TITLE_CHARS


def test_the_prompt_quotes_the_first_turn_and_bounds_its_length() -> None:
    prompt = title_prompt([{"role": "user", "content": "x" * 10_000}, {"role": "assistant", "content": "Sure."}])
    assert [m["role"] for m in prompt] == ["system", "user"]
    assert "title" in prompt[0]["content"] and "few words" in prompt[0]["content"]
    assert prompt[1]["content"].startswith("User: xxx") and prompt[1]["content"].endswith("Assistant: Sure.")
    assert len(prompt[1]["content"]) < 2100
