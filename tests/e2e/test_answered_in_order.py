"""End to end: a conversation's messages are answered one at a time in their order, so each reply
sees every earlier message and its reply, however the messages were sent (one request of six
rows; two quick calls to POST /api/chat; the first delayed by the model's 429s)."""

from __future__ import annotations

import threading

import httpx
import psycopg

from devstack.service_process import ServiceProcess
from devstack.stack import LocalStack
from tests.support.polling import wait_until
from tests.support.quotas import insert_messages, new_conversation, rest_as
from tests.support.stack import FakeModelControl
from tests.support.users import SignedUpUser

WORDS = ["one", "two", "three", "four", "five", "six"]


def answered(db: psycopg.Connection, conversation_id: str) -> list[tuple[str, str]]:
    """The conversation's rows in order, leaving out a reply still streaming (its row exists from
    the first token, with part of its text)."""
    return db.execute(
        "select role, content from public.messages where conversation_id = %s and status <> 'streaming' order by seq",
        (conversation_id,),
    ).fetchall()


def transcript(words: list[str]) -> list[tuple[str, str]]:
    return [row for word in words for row in (("user", word), ("assistant", f"Echo: {word}"))]


def prompt_for(fake_model: FakeModelControl, word: str) -> list[tuple[str, str]]:
    [request] = [r for r in fake_model.requests() if r["messages"][-1]["content"] == word]  # type: ignore[index]
    return [(m["role"], m["content"]) for m in request["messages"]]  # type: ignore[union-attr]


def test_a_batch_is_answered_in_order_each_reply_seeing_all_before_it(
    live_service: ServiceProcess, stack: LocalStack, alice: SignedUpUser, db: psycopg.Connection,
    fake_model: FakeModelControl,
) -> None:
    rest = rest_as(stack, alice.access_token)
    conversation = new_conversation(rest)
    assert insert_messages(rest, conversation, WORDS).status_code == 201
    wait_until(lambda: len(answered(db, conversation)) == 12, deadline_seconds=20)

    assert answered(db, conversation) == transcript(WORDS)
    for n, word in enumerate(WORDS):
        assert prompt_for(fake_model, word) == [*transcript(WORDS[:n]), ("user", word)]
    history = alice.api(live_service.url).get(f"/api/chat/{conversation}/history").json()["messages"]
    assert [(m["role"], m["content"]) for m in history] == transcript(WORDS)


def test_two_quick_messages_are_answered_in_order_even_when_the_first_is_delayed(
    live_service: ServiceProcess, alice: SignedUpUser, db: psycopg.Connection, fake_model: FakeModelControl
) -> None:
    """The first message's model call meets two 429s; the second, sent meanwhile, waits its turn."""
    fake_model.queue_faults({"kind": "rate_limit", "retry_after": 0.3}, {"kind": "rate_limit", "retry_after": 0.3},
                            match="first")
    api = alice.api(live_service.url)
    conversation = api.post("/api/conversations", json={}).json()["id"]
    responses: dict[str, httpx.Response] = {}

    def send(word: str) -> None:
        responses[word] = alice.api(live_service.url).post(f"/api/chat/{conversation}", json={"message": word})

    first = threading.Thread(target=send, args=("first",))
    first.start()
    wait_until(lambda: db.execute("select 1 from public.messages where content = 'first'").fetchone())
    send("second")
    first.join()

    assert {word: r.status_code for word, r in responses.items()} == {"first": 200, "second": 200}
    assert answered(db, conversation) == transcript(["first", "second"])
    assert prompt_for(fake_model, "second") == [*transcript(["first"]), ("user", "second")]
