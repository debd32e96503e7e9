"""Token accounting end to end: the usage the model reports for a reply is what the user's day
is charged, and once the day's tokens are used up the next message is refused before any model
call."""

from __future__ import annotations

import psycopg

from devstack.service_process import ServiceProcess
from devstack.stack import LocalStack
from tests.support.database import one_row
from tests.support.polling import wait_until
from tests.support.quotas import insert_messages, limit_user, new_conversation, rest_as
from tests.support.stack import FakeModelControl
from tests.support.users import SignedUpUser


def estimate(text: str) -> int:
    """The fake model's documented usage estimate per message (devstack/fake_openai.py)."""
    return len(text) // 4 + 1


def test_reply_tokens_as_reported_are_charged_and_then_refuse(
    live_service: ServiceProcess, stack: LocalStack, alice: SignedUpUser, db: psycopg.Connection,
    fake_model: FakeModelControl,
) -> None:
    limit_user(db, alice.user_id, tokens_per_day=30)
    rest = rest_as(stack, alice.access_token)
    conversation = new_conversation(rest, system_prompt="You are terse.")
    question = "What is the capital of France? Answer in one word."
    assert insert_messages(rest, conversation, [question]).status_code == 201
    # Settled, not merely begun: a streamed reply's row exists from its first token.
    wait_until(lambda: db.execute("select 1 from public.messages where role = 'assistant' and status = 'done'").fetchone())

    sent = fake_model.requests()
    assert len(sent) == 1
    assert sent[0]["max_tokens"] == 1024  # REPLY_MAX_TOKENS' default: a reply's cost is bounded too
    reported = sum(estimate(str(m["content"])) for m in sent[0]["messages"]) + estimate(f"Echo: {question}")
    stored = one_row(db, "select prompt_tokens + completion_tokens from public.messages where role = 'assistant'")
    usage = one_row(db, "select messages, tokens from public.chat_usage where user_id = %s", (alice.user_id,))
    assert stored == (reported,) and usage == (1, reported)
    assert reported >= 30

    refused = insert_messages(rest, conversation, ["one more"])
    assert refused.status_code == 429
    assert refused.json()["message"].startswith(f"Daily AI usage limit reached: {reported} of 30 tokens used today.")
    assert len(fake_model.requests()) == 1
