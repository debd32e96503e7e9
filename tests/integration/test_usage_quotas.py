"""The database's usage limits, through the gateway as a frontend reaches them: every row of a
batch counts, a refusal is a 429 that names the limit and its reset, nothing refused is stored,
and nothing a user can call resets or raises their own limits."""

from __future__ import annotations

import datetime
import json

import httpx
import psycopg
import pytest

from devstack.stack import LocalStack
from tests.support.database import Role
from tests.support.quotas import insert_messages, limit_user, new_conversation, rest_as
from tests.support.users import SignedUpUser


def user_messages(db: psycopg.Connection, user_id: str) -> int:
    return int(db.execute("select count(*) from public.messages where user_id = %s and role = 'user'", (user_id,))
               .fetchone()[0])


def refusal(response: httpx.Response) -> dict[str, object]:
    assert response.status_code == 429, response.text
    body = response.json()
    assert body["code"] == "quota_exceeded"
    return {**body, "details": json.loads(body["details"])}


def test_batch_rows_count_one_by_one_and_a_refused_batch_stores_nothing(
    stack: LocalStack, alice: SignedUpUser, db: psycopg.Connection
) -> None:
    limit_user(db, alice.user_id, messages_per_window=5, window_seconds=600)
    rest = rest_as(stack, alice.access_token)
    conversation = new_conversation(rest)

    too_many = refusal(insert_messages(rest, conversation, [f"m{n}" for n in range(6)]))
    assert user_messages(db, alice.user_id) == 0
    assert too_many["details"]["limit"] == "messages_per_window"
    assert "at most 5 per 600 s" in str(too_many["message"])

    assert insert_messages(rest, conversation, [f"m{n}" for n in range(5)]).status_code == 201
    over = insert_messages(rest, conversation, ["one more"])
    details = refusal(over)["details"]
    assert 1 <= int(over.headers["Retry-After"]) <= 600
    assert details["retry_after_seconds"] == int(over.headers["Retry-After"])
    assert user_messages(db, alice.user_id) == 5


def test_daily_message_limit_resets_at_utc_midnight(
    stack: LocalStack, alice: SignedUpUser, db: psycopg.Connection
) -> None:
    limit_user(db, alice.user_id, messages_per_day=3)
    rest = rest_as(stack, alice.access_token)
    conversation = new_conversation(rest)
    assert insert_messages(rest, conversation, ["a", "b", "c"]).status_code == 201
    body = refusal(insert_messages(rest, conversation, ["d"]))
    tomorrow = datetime.datetime.now(datetime.timezone.utc).date() + datetime.timedelta(days=1)
    assert body["details"] == {
        "limit": "messages_per_day", "allowed": 3, "resets_at": f"{tomorrow.isoformat()}T00:00:00Z",
        "retry_after_seconds": body["details"]["retry_after_seconds"],
    }
    assert "Daily message limit reached: at most 3 messages per day" in str(body["message"])


def test_tokens_used_today_refuse_new_messages(stack: LocalStack, alice: SignedUpUser, db: psycopg.Connection) -> None:
    """Replies' tokens count for the author of the message they answer; at the limit, no more messages."""
    limit_user(db, alice.user_id, tokens_per_day=100)
    rest = rest_as(stack, alice.access_token)
    conversation = new_conversation(rest)
    assert insert_messages(rest, conversation, ["question"]).status_code == 201
    question = db.execute("select id from public.messages where user_id = %s", (alice.user_id,)).fetchone()[0]
    Role(stack.database_url, "service_role").execute(
        "insert into public.messages (conversation_id, user_id, role, content, status, reply_to, prompt_tokens, "
        "completion_tokens) values (%s, %s, 'assistant', 'answer', 'done', %s, 70, 30)",
        (conversation, alice.user_id, question),
    )
    assert rest.get("/chat_usage", params={"select": "messages,tokens"}).json() == [{"messages": 1, "tokens": 100}]
    body = refusal(insert_messages(rest, conversation, ["another"]))
    assert body["details"]["limit"] == "tokens_per_day"
    assert "100 of 100 tokens used today" in str(body["message"])


def test_chat_quota_reports_what_is_left(stack: LocalStack, alice: SignedUpUser, db: psycopg.Connection) -> None:
    limit_user(db, alice.user_id, messages_per_day=10, messages_per_window=4)
    rest = rest_as(stack, alice.access_token)
    conversation = new_conversation(rest)
    assert insert_messages(rest, conversation, ["a", "b", "c"]).status_code == 201
    quota = rest.post("/rpc/chat_quota").json()
    assert {key: quota[key] for key in ("messages_per_day", "messages_today", "messages_left_today",
                                        "messages_per_window", "messages_in_window", "conversations")} == {
        "messages_per_day": 10, "messages_today": 3, "messages_left_today": 7,
        "messages_per_window": 4, "messages_in_window": 3, "conversations": 1,
    }
    assert quota["window_resets_at"] and quota["day_resets_at"].endswith("T00:00:00Z")
    assert rest_as(stack, None).post("/rpc/chat_quota").status_code == 401


def test_rows_written_by_the_service_role_are_not_counted(
    stack: LocalStack, alice: SignedUpUser, db: psycopg.Connection
) -> None:
    limit_user(db, alice.user_id, messages_per_window=1)
    conversation = new_conversation(rest_as(stack, alice.access_token))
    Role(stack.database_url, "service_role").execute(
        "insert into public.messages (conversation_id, user_id, content) select %s, %s, 'seed ' || n "
        "from generate_series(1, 3) n",
        (conversation, alice.user_id),
    )
    assert db.execute("select count(*) from public.chat_usage where user_id = %s", (alice.user_id,)).fetchone()[0] == 0


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        pytest.param("post", "/rpc/consume_chat_quota", {"max_requests": 1, "window_seconds": 0}, 404,
                     id="old-counter-with-limits-as-arguments-is-gone"),
        pytest.param("post", "/rpc/consume_message_quota", {"who": None, "message_count": -100}, 404,
                     id="private-counter-not-exposed"),
        pytest.param("post", "/rpc/effective_quota", {"who": None}, 404, id="private-limits-not-exposed"),
        pytest.param("post", "/rpc/configure_chat_models", {"models": ["o1-pro"]}, 403, id="allowlist-service-only"),
        pytest.param("patch", "/chat_usage", {"messages": 0, "tokens": 0}, 403, id="usage-not-updatable"),
        pytest.param("delete", "/chat_usage", None, 403, id="usage-not-deletable"),
        pytest.param("post", "/chat_usage", {"day": "2000-01-01", "messages": -1000}, 403, id="usage-not-insertable"),
        pytest.param("post", "/user_quotas", {"messages_per_day": 1000000}, 404, id="overrides-not-exposed"),
        pytest.param("post", "/quota_defaults", {"messages_per_day": 1000000}, 404, id="defaults-not-exposed"),
    ],
)
def test_the_user_cannot_reset_or_raise_their_limits(
    stack: LocalStack, alice: SignedUpUser, db: psycopg.Connection,
    method: str, path: str, body: object, status: int,
) -> None:
    limit_user(db, alice.user_id, messages_per_window=1, window_seconds=600)
    rest = rest_as(stack, alice.access_token)
    conversation = new_conversation(rest)
    assert insert_messages(rest, conversation, ["first"]).status_code == 201

    params = {"user_id": f"eq.{alice.user_id}"} if method in ("patch", "delete") else None
    attempt = rest.request(method.upper(), path, json=body, params=params)
    assert attempt.status_code == status, attempt.text

    refusal(insert_messages(rest, conversation, ["second"]))
    assert db.execute("select messages from public.chat_usage where user_id = %s", (alice.user_id,)).fetchone()[0] == 1
    assert db.execute("select count(*) from private.chat_models where model = %s", ("o1-pro",)).fetchone()[0] == 0


def test_another_users_usage_is_invisible(
    stack: LocalStack, alice: SignedUpUser, bob: SignedUpUser
) -> None:
    rest = rest_as(stack, alice.access_token)
    assert insert_messages(rest, new_conversation(rest), ["mine"]).status_code == 201
    assert len(rest.get("/chat_usage").json()) == 1
    assert rest_as(stack, bob.access_token).get("/chat_usage").json() == []
    assert rest_as(stack, None).get("/chat_usage").status_code == 401
