"""A hostile user with an ordinary account, replaying what was tried against `make run`: six
rows in one request (answered in order), a flood of direct inserts from 8 threads (single rows
and batches), one request of 500 rows, one of 1,000 conversations, a 20 MB system prompt, an
expensive model, and every way to reset their own limit. The limits hold on every path, the
model is called exactly once per accepted message, and the ledger is clean."""

from __future__ import annotations

import threading
from collections import Counter

import httpx
import psycopg
import pytest

from devstack.stack import LocalStack
from tests.support.quotas import limit_user, rest_as
from tests.support.stack import FakeModelControl
from tests.torture.harness import StartService
from tests.torture.ledger import settle_and_account
from tests.torture.traffic import GatewayUser

pytestmark = pytest.mark.timeout(600)

WINDOW_LIMIT = 40
THREADS = 8
SIX = ["one", "two", "three", "four", "five", "six"]


def flood(rest: httpx.Client, conversation_id: str, requests_per_thread: int) -> tuple[int, Counter[int]]:
    """8 threads, each alternating single rows and batches of 5. Returns (rows accepted, statuses)."""
    accepted = 0
    statuses: Counter[int] = Counter()
    lock = threading.Lock()

    def worker(thread: int) -> None:
        nonlocal accepted
        for n in range(requests_per_thread):
            size = 1 if n % 2 == 0 else 5
            rows = [{"conversation_id": conversation_id, "content": f"flood {thread}-{n}-{k}"} for k in range(size)]
            response = rest.post("/messages", json=rows)
            with lock:
                statuses[response.status_code] += 1
                if response.status_code == 201:
                    accepted += size

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return accepted, statuses


def test_hostile_user(
    torture_stack: LocalStack, torture_url: str, start_service: StartService, fake: FakeModelControl, long_run: bool
) -> None:
    service = start_service()
    torture_stack.configure_webhook(f"{service.url}/webhooks/messages")
    attacker = GatewayUser(torture_stack)
    with psycopg.connect(torture_url, autocommit=True) as db:
        limit_user(db, attacker.user_id, messages_per_window=WINDOW_LIMIT, window_seconds=3600, max_conversations=20)
    rest = rest_as(torture_stack, attacker.access_token)
    conversation = attacker.new_conversation(title="flood")
    figures: dict[str, object] = {}

    # Six rows in one request (one created_at): answered in their order, each seeing those before.
    ordered = attacker.new_conversation(title="one..six")
    assert rest.post("/messages", json=[{"conversation_id": ordered, "content": w} for w in SIX]).status_code == 201

    # One request of 500 rows: refused whole, nothing stored, no model call.
    batch = rest.post("/messages", json=[{"conversation_id": conversation, "content": f"b{n}"} for n in range(500)])
    figures["batch500"] = batch.status_code
    assert (batch.status_code, batch.json()["code"]) == (429, "quota_exceeded")

    accepted, statuses = flood(rest, conversation, requests_per_thread=40 if long_run else 12)
    figures.update(requests=sum(statuses.values()), accepted=accepted, refused_429=statuses[429])
    assert set(statuses) <= {201, 429}, statuses
    room = WINDOW_LIMIT - len(SIX)
    assert room - 4 <= accepted <= room  # a refused batch of 5 may leave up to 4 unused

    # Every way to reset or raise the limit, as that user.
    attempts = {
        "reset_rpc": rest.post("/rpc/consume_chat_quota", json={"max_requests": 1000, "window_seconds": 0}),
        "usage_patch": rest.patch("/chat_usage", params={"user_id": f"eq.{attacker.user_id}"}, json={"messages": 0}),
        "models_rpc": rest.post("/rpc/configure_chat_models", json={"models": ["o1-pro-EXPENSIVE"]}),
    }
    figures.update({name: response.status_code for name, response in attempts.items()})
    assert [response.status_code for response in attempts.values()] == [404, 403, 403]
    assert rest.post("/messages", json={"conversation_id": conversation, "content": "after reset"}).status_code == 429
    api_chat = attacker.api(service.url).post(f"/api/chat/{conversation}", json={"message": "through /api"})
    figures["api_chat"] = api_chat.status_code
    assert (api_chat.status_code, api_chat.json()["error"]["code"]) == (429, "rate_limited")

    # What reaches the model, and how much the user can create.
    many = rest.post("/conversations", json=[{"title": f"c{n}"} for n in range(1000)])
    prompt = rest.patch("/conversations", params={"id": f"eq.{conversation}"}, json={"system_prompt": "x" * 20_000_000})
    model = rest.patch("/conversations", params={"id": f"eq.{conversation}"}, json={"model": "o1-pro-EXPENSIVE"})
    figures.update(conversations1000=many.status_code, prompt20MB=prompt.status_code, model_patch=model.status_code)
    assert (many.status_code, prompt.status_code, model.status_code) == (403, 400, 400)
    with psycopg.connect(torture_url, autocommit=True) as db:
        stored = db.execute("select count(*), max(char_length(system_prompt)), max(model) from public.conversations"
                            " where user_id = %s", (attacker.user_id,)).fetchone()
    assert tuple(stored) == (2, None, None)  # "flood" and "one..six", untouched

    result = settle_and_account(torture_url, "hostile-user", services=[service], deadline_seconds=120)
    model_calls = len(fake.requests())
    prompts = {r["messages"][-1]["content"]: [m["content"] for m in r["messages"]] for r in fake.requests()}
    in_order = all(prompts[word] == [x for w in SIX[:n] for x in (w, f"Echo: {w}")] + [word] for n, word in enumerate(SIX))
    result.extra.update({**figures, "model_calls": model_calls, "six_in_order": in_order})
    result.assert_clean()
    assert result.messages == accepted + len(SIX) == model_calls
    assert in_order, {word: prompts[word] for word in SIX}
