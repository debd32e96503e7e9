"""Regenerate, edit and branch, titles, search and usage through the running service and the local
stack: the REST door's routes over the migration's SQL functions, with titles turned on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from devstack.service_process import ServiceProcess
from devstack.stack import LocalStack
from tests.support.database import one_row
from tests.support.polling import wait_until
from tests.support.processes import start_service
from tests.support.stack import UNCONFIGURED_WEBHOOK, FakeModelControl
from tests.support.users import SignedUpUser

TITLE_MODEL = "fake-model-2"
TITLE_MAX_TOKENS = 16


@pytest.fixture(scope="module")
def titling_service(stack: LocalStack, state_dir: Path) -> Iterator[ServiceProcess]:
    running = start_service(
        stack, state_dir, GENERATE_TITLES="true", OPENAI_TITLE_MODEL=TITLE_MODEL, TITLE_MAX_TOKENS=str(TITLE_MAX_TOKENS)
    )
    yield running
    running.stop()


@pytest.fixture
def service(titling_service: ServiceProcess, stack: LocalStack) -> Iterator[ServiceProcess]:
    """The module's service with the database webhook pointed at it, for this test only."""
    stack.configure_webhook(f"{titling_service.url}/webhooks/messages")
    yield titling_service
    stack.configure_webhook(UNCONFIGURED_WEBHOOK)


def estimate(text: str) -> int:
    """The fake model's documented usage estimate per message (devstack/fake_openai)."""
    return len(text) // 4 + 1


def new_conversation(api: httpx.Client) -> str:
    response = api.post("/api/conversations", json={})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def send(api: httpx.Client, conversation_id: str, text: str) -> dict[str, Any]:
    response = api.post(f"/api/chat/{conversation_id}", json={"message": text})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def branch(api: httpx.Client, conversation_id: str, leaf: str) -> dict[str, Any]:
    response = api.get(f"/api/chat/{conversation_id}/history", params={"leaf": leaf})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_regenerate_returns_a_new_reply_and_keeps_the_old_one_as_a_version(
    service: ServiceProcess, alice: SignedUpUser
) -> None:
    api = alice.api(service.url)
    conversation_id = new_conversation(api)
    first = send(api, conversation_id, "Where to?")
    response = api.post(f"/api/chat/{conversation_id}/messages/{first['message_id']}/regenerate")
    assert response.status_code == 200, response.text
    again = response.json()
    assert set(again) == set(first) and again["status"] == "done"
    assert again["response"] == "Echo: Where to?" and again["reply_id"] != first["reply_id"]

    newest = branch(api, conversation_id, "newest")
    assert [(m["role"], m["content"]) for m in newest["messages"]] == [("user", "Where to?"), ("assistant", again["response"])]
    question = newest["messages"][0]
    assert question["id"] == first["message_id"]  # a regeneration shows as the message it regenerates
    assert question["reply_versions"]["ids"] == [first["message_id"], again["message_id"]]
    assert question["reply_versions"]["index"] == 1
    assert newest["messages"][1]["id"] == again["reply_id"]

    old = branch(api, conversation_id, first["reply_id"])
    assert [m["id"] for m in old["messages"]] == [first["message_id"], first["reply_id"]]
    assert old["messages"][0]["reply_versions"]["index"] == 0


def test_edit_answers_on_a_new_branch_and_the_old_branch_stays_readable(
    service: ServiceProcess, alice: SignedUpUser, fake_model: FakeModelControl
) -> None:
    api = alice.api(service.url)
    conversation_id = new_conversation(api)
    one, two = send(api, conversation_id, "one"), send(api, conversation_id, "two")
    response = api.post(f"/api/chat/{conversation_id}/messages/{one['message_id']}/edit", json={"message": "uno"})
    assert response.status_code == 200, response.text
    edited = response.json()
    assert edited["response"] == "Echo: uno"
    # The edit's reply saw its own branch only: nothing of "one" or "two".
    [prompt] = fake_model.requests(match="uno")
    assert [m["content"] for m in prompt["messages"]] == ["uno"]  # type: ignore[index]

    new = branch(api, conversation_id, edited["message_id"])
    assert [m["content"] for m in new["messages"]] == ["uno", "Echo: uno"]
    assert new["leaf"] == edited["message_id"]
    assert new["messages"][0]["versions"] == {"index": 1, "count": 2, "ids": [one["message_id"], edited["message_id"]]}
    assert branch(api, conversation_id, "newest")["messages"] == new["messages"]

    old = branch(api, conversation_id, two["message_id"])
    assert [m["content"] for m in old["messages"]] == ["one", "Echo: one", "two", "Echo: two"]
    assert old["leaf"] == two["message_id"]
    whole = api.get(f"/api/chat/{conversation_id}/history").json()  # no leaf: every message, in order
    assert [m["content"] for m in whole["messages"]] == ["one", "Echo: one", "two", "Echo: two", "uno", "Echo: uno"]


def test_edit_and_regenerate_refuse_someone_elses_message(
    service: ServiceProcess, alice: SignedUpUser, bob: SignedUpUser, db: psycopg.Connection
) -> None:
    api = alice.api(service.url)
    conversation_id = new_conversation(api)
    mine = send(api, conversation_id, "mine")
    intruder = bob.api(service.url)
    for action, body in (("regenerate", None), ("edit", {"message": "theirs"})):
        response = intruder.post(f"/api/chat/{conversation_id}/messages/{mine['message_id']}/{action}", json=body)
        assert (response.status_code, response.json()["error"]["code"]) == (404, "not_found"), action
    assert one_row(db, "select count(*) from public.messages where conversation_id = %s", (conversation_id,)) == (2,)


def test_search_finds_your_own_text_and_not_another_users(
    service: ServiceProcess, alice: SignedUpUser, bob: SignedUpUser
) -> None:
    api = alice.api(service.url)
    conversation_id = new_conversation(api)
    send(api, conversation_id, "a purple elephant")
    other = bob.api(service.url)
    send(other, new_conversation(other), "my purple elephant is private")

    response = api.get("/api/search", params={"q": "elephant"})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert {(r["role"], r["conversation_id"]) for r in results} == {("user", conversation_id),
                                                                      ("assistant", conversation_id)}
    assert all("«elephant»" in r["snippet"] and "private" not in r["snippet"] for r in results)
    blank = api.get("/api/search", params={"q": "  "})
    assert (blank.status_code, blank.json()["error"]["code"]) == (400, "bad_request")


def test_usage_counts_the_regeneration_and_the_titles_tokens(
    service: ServiceProcess, alice: SignedUpUser, db: psycopg.Connection, fake_model: FakeModelControl
) -> None:
    api = alice.api(service.url)
    conversation_id = new_conversation(api)
    first = send(api, conversation_id, "Plan a trip to Lisbon")
    title = wait_until(lambda: one_row(db, "select title from public.conversations where id = %s", (conversation_id,))[0])
    assert "Lisbon" in title and "\n" not in title and len(title) <= 80
    api.post(f"/api/chat/{conversation_id}/messages/{first['message_id']}/regenerate").raise_for_status()

    [titled] = [r for r in fake_model.requests() if r["model"] == TITLE_MODEL]
    assert titled["max_tokens"] == TITLE_MAX_TOKENS
    prompt = [str(m["content"]) for m in titled["messages"]]  # type: ignore[attr-defined]
    title_tokens = sum(estimate(text) for text in prompt) + estimate(f"Echo: {prompt[-1]}")
    reply_tokens = one_row(db, "select sum(prompt_tokens + completion_tokens) from public.messages"
                               " where conversation_id = %s and role = 'assistant'", (conversation_id,))[0]
    usage = api.get("/api/usage")
    assert usage.status_code == 200, usage.text
    assert (usage.json()["messages_today"], usage.json()["tokens_today"]) == (2, reply_tokens + title_tokens)
    assert len([r for r in fake_model.requests() if r["model"] == TITLE_MODEL]) == 1  # titled once
