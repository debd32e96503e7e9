"""What a user can make the operator pay for, bounded by the database on every path: the system
prompt's length, the model (the operator's allowlist), and how many conversations one user has."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import psycopg
import pytest

from devstack.stack import LocalStack
from tests.support.quotas import limit_user, new_conversation, rest_as
from tests.support.users import SignedUpUser

OFFERED = ["fake-model", "fake-model-2"]


@pytest.fixture
def chat_models(db: psycopg.Connection) -> Iterator[Callable[[list[str]], None]]:
    """Sets the allowlist as the service publishes it at start-up (configure_chat_models), and
    puts back what the session's service published."""
    before = [row[0] for row in db.execute("select model from private.chat_models")]

    def offer(models: list[str]) -> None:
        db.execute("delete from private.chat_models")
        if models:
            db.execute("select public.configure_chat_models(%s)", (models,))

    offer(OFFERED)
    yield offer
    offer(before)


@pytest.fixture
def offered_models(chat_models: Callable[[list[str]], None]) -> list[str]:
    return OFFERED


def error_of(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    return str(response.json()["message"])


def test_twenty_megabyte_system_prompt_is_refused_on_insert_and_update(
    stack: LocalStack, alice: SignedUpUser, db: psycopg.Connection
) -> None:
    rest = rest_as(stack, alice.access_token)
    huge = "x" * 20_000_000
    message = error_of(rest.post("/conversations", json={"system_prompt": huge}), 400, "system_prompt_too_long")
    assert message == "The system prompt has 20000000 characters; at most 8000 are allowed."
    conversation = new_conversation(rest, system_prompt="y" * 8000)
    patched = rest.patch("/conversations", params={"id": f"eq.{conversation}"}, json={"system_prompt": huge})
    error_of(patched, 400, "system_prompt_too_long")
    stored = db.execute("select char_length(system_prompt) from public.conversations").fetchall()
    assert stored == [(8000,)]


def test_system_prompt_limit_follows_the_users_override(
    stack: LocalStack, alice: SignedUpUser, db: psycopg.Connection
) -> None:
    limit_user(db, alice.user_id, system_prompt_max_chars=10)
    rest = rest_as(stack, alice.access_token)
    error_of(rest.post("/conversations", json={"system_prompt": "eleven char"}), 400, "system_prompt_too_long")
    new_conversation(rest, system_prompt="ten chars!")


def test_model_outside_the_allowlist_is_refused(
    stack: LocalStack, alice: SignedUpUser, db: psycopg.Connection, offered_models: list[str]
) -> None:
    rest = rest_as(stack, alice.access_token)
    message = error_of(rest.post("/conversations", json={"model": "o1-pro-EXPENSIVE"}), 400, "model_not_allowed")
    assert message == (
        "The model 'o1-pro-EXPENSIVE' is not offered here. Choose one of: fake-model, fake-model-2, "
        "or leave it empty for the default."
    )
    conversation = new_conversation(rest, model="fake-model-2")
    patched = rest.patch("/conversations", params={"id": f"eq.{conversation}"}, json={"model": "o1-pro-EXPENSIVE"})
    error_of(patched, 400, "model_not_allowed")
    assert db.execute("select model from public.conversations").fetchall() == [("fake-model-2",)]


def test_retired_model_does_not_block_other_edits(
    stack: LocalStack, alice: SignedUpUser, chat_models: Callable[[list[str]], None]
) -> None:
    rest = rest_as(stack, alice.access_token)
    conversation = new_conversation(rest, model="fake-model-2")
    chat_models(["fake-model"])
    renamed = rest.patch("/conversations", params={"id": f"eq.{conversation}"}, json={"title": "renamed"})
    assert renamed.status_code == 204, renamed.text


def test_no_model_configured_allows_only_the_default(
    stack: LocalStack, alice: SignedUpUser, chat_models: Callable[[list[str]], None]
) -> None:
    chat_models([])
    rest = rest_as(stack, alice.access_token)
    message = error_of(rest.post("/conversations", json={"model": "fake-model"}), 400, "model_not_allowed")
    assert "(none configured)" in message
    new_conversation(rest)


def test_conversations_per_user_are_capped_counting_every_row_of_a_batch(
    stack: LocalStack, alice: SignedUpUser, bob: SignedUpUser, db: psycopg.Connection
) -> None:
    limit_user(db, alice.user_id, max_conversations=3)
    rest = rest_as(stack, alice.access_token)
    message = error_of(rest.post("/conversations", json=[{"title": f"c{n}"} for n in range(4)]), 403,
                       "conversation_limit")
    assert message == "You can have at most 3 conversations. Delete some to start new ones."
    assert rest.post("/conversations", json=[{"title": f"c{n}"} for n in range(3)]).status_code == 201
    error_of(rest.post("/conversations", json={"title": "one more"}), 403, "conversation_limit")
    assert rest_as(stack, bob.access_token).post("/conversations", json={"title": "bob's"}).status_code == 201
    assert rest.delete("/conversations", params={"title": "eq.c0"}).status_code == 204
    assert rest.post("/conversations", json={"title": "after a delete"}).status_code == 201


def test_configure_chat_models_needs_a_model(db: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        db.execute("select public.configure_chat_models('{}'::text[])")


@pytest.mark.parametrize("function", ["conversation_history", "list_conversations"])
def test_unknown_cursor_is_a_404_the_caller_can_act_on(
    stack: LocalStack, alice: SignedUpUser, function: str
) -> None:
    rest = rest_as(stack, alice.access_token)
    args = {"before": "00000000-0000-0000-0000-000000000000"}
    if function == "conversation_history":
        args["conversation_id"] = new_conversation(rest)
    response = rest.post(f"/rpc/{function}", json=args)
    assert response.status_code == 404, response.text
    assert response.json()["code"] == "cursor_not_found"
    assert response.json()["hint"] == "Pass the next_before of a previous page, or start again without it."
