"""End to end: a user signed in through supabase-py inserts a message through the gateway, the
pg_net stand-in delivers the signed webhook to the running service, and exactly one reply row
appears, or a failed row with a readable error, whatever goes wrong on the way."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from supabase import Client, ClientOptions, create_client

from devstack.service_process import ServiceProcess
from devstack.stack import LocalStack
from tests.support.deliveries import deliver, message_event, message_state, pending_message, replies_to
from tests.support.polling import wait_until
from tests.support.processes import SERVICE_TEST_SETTINGS, start_service
from tests.support.stack import FakeModelControl


def signed_up_user(stack: LocalStack) -> Client:
    assert stack.keys is not None
    client = create_client(
        stack.api_url, stack.keys.api_key("anon"),
        options=ClientOptions(auto_refresh_token=False, persist_session=False),
    )
    client.auth.sign_up({"email": f"{uuid.uuid4()}@example.test", "password": "correct horse battery"})
    return client


def test_user_message_gets_one_reply_with_the_conversation_in_the_prompt(
    live_service: ServiceProcess, stack: LocalStack, db: psycopg.Connection, fake_model: FakeModelControl
) -> None:
    user = signed_up_user(stack)
    conversation = user.table("conversations").insert({"system_prompt": "Be brief."}).execute().data[0]
    first = user.table("messages").insert({"conversation_id": conversation["id"], "content": "first"}).execute().data[0]
    wait_until(lambda: replies_to(db, first["id"]))
    second = user.table("messages").insert({"conversation_id": conversation["id"], "content": "second"}).execute().data[0]
    [(reply_id, content)] = wait_until(lambda: replies_to(db, second["id"]))

    assert content == "Echo: second"
    rows = user.table("messages").select("id, role, reply_to, status").eq("conversation_id", conversation["id"]) \
        .order("created_at").execute().data
    assert [(row["role"], row["status"]) for row in rows] == [("user", "done"), ("assistant", "done")] * 2
    assert rows[3] == {"id": reply_id, "role": "assistant", "reply_to": second["id"], "status": "done"}
    prompt = fake_model.requests(match="second")[0]["messages"]
    assert prompt == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "Echo: first"},
        {"role": "user", "content": "second"},
    ]


def test_five_concurrent_deliveries_give_one_reply(
    service: ServiceProcess, stack: LocalStack, db: psycopg.Connection, fake_model: FakeModelControl
) -> None:
    fake_model.set_latency(200)
    message_id, conversation_id = pending_message(db, "only once")
    body = message_event(message_id, conversation_id)
    with ThreadPoolExecutor(5) as pool:
        statuses = list(pool.map(lambda _: deliver(service.url, stack.webhook_secret, body).status_code, range(5)))
    assert statuses == [202] * 5
    wait_until(lambda: message_state(db, message_id)[0] == "done")
    assert len(replies_to(db, message_id)) == 1
    assert len(fake_model.requests(match="only once")) == 1


@pytest.mark.parametrize(
    ("faults", "requests", "status", "readable"),
    [
        ([{"kind": "rate_limit", "retry_after": 0.05}] * 2, 3, "done", None),
        ([{"kind": "server_error"}], 2, "done", None),
        ([{"kind": "server_error"}] * 3, 3, "failed", "server error"),
        ([{"kind": "hang", "seconds": 5}] * 3, 3, "failed", "did not answer in time"),
        ([{"kind": "rate_limit", "retry_after": 0.01}] * 3, 3, "failed", "rate limited"),
        ([{"kind": "insufficient_quota"}], 1, "failed", "quota"),
        ([{"kind": "bad_request"}], 1, "failed", "rejected this conversation"),
    ],
    ids=["429-twice", "500-once", "500-always", "hang", "429-always", "quota", "400"],
)
def test_model_faults_are_retried_or_fail_visibly(
    service: ServiceProcess, stack: LocalStack, db: psycopg.Connection, fake_model: FakeModelControl,
    faults: list[dict[str, object]], requests: int, status: str, readable: str | None,
) -> None:
    text = f"fault {uuid.uuid4()}"
    fake_model.queue_faults(*faults, match=text)
    message_id, conversation_id = pending_message(db, text)
    deliver(service.url, stack.webhook_secret, message_event(message_id, conversation_id))

    final = wait_until(lambda: (state := message_state(db, message_id))[0] in ("done", "failed") and state)
    assert final[0] == status
    assert len(fake_model.requests(match=text)) == requests
    if status == "done":
        assert len(replies_to(db, message_id)) == 1 and final[1] is None
    else:
        assert replies_to(db, message_id) == []
        assert readable in final[1]


def test_long_conversation_context_fits_the_budget_and_keeps_the_newest(
    service: ServiceProcess, stack: LocalStack, db: psycopg.Connection, fake_model: FakeModelControl
) -> None:
    message_id, conversation_id = pending_message(db, "first of many")
    user_id = db.execute("select user_id from public.messages where id = %s", (message_id,)).fetchone()[0]
    db.execute("update public.messages set status = 'done' where id = %s", (message_id,))
    db.execute(
        "insert into public.messages (conversation_id, user_id, role, content, status, created_at)"
        " select %s, %s, 'user', 'message ' || n || ' ' || repeat('x', 200), 'done', now() + n * interval '1 ms'"
        " from generate_series(1, 3000) n",
        (conversation_id, user_id),
    )
    latest = db.execute(
        "insert into public.messages (conversation_id, user_id, content, created_at)"
        " values (%s, %s, 'the newest question', now() + interval '1 hour') returning id",
        (conversation_id, user_id),
    ).fetchone()[0]
    deliver(service.url, stack.webhook_secret, message_event(str(latest), conversation_id))
    wait_until(lambda: replies_to(db, str(latest)))

    prompt = fake_model.requests(match="the newest question")[0]["messages"]
    assert prompt[-1] == {"role": "user", "content": "the newest question"}
    numbers = [int(item["content"].split()[1]) for item in prompt[:-1]]
    assert numbers == list(range(3001 - len(numbers), 3001)), "the newest messages, oldest first, none skipped"
    estimated = sum(len(item["content"]) // 4 + 4 for item in prompt)
    assert estimated <= int(SERVICE_TEST_SETTINGS["CONTEXT_TOKEN_BUDGET"])
    assert len(prompt) > 10


def test_message_inserted_while_the_service_is_down_is_answered_when_it_returns(
    stack: LocalStack, state_dir: Path, db: psycopg.Connection, fake_model: FakeModelControl
) -> None:
    stack.configure_webhook("http://127.0.0.1:9/webhooks/messages")  # the service is down
    user = signed_up_user(stack)
    conversation = user.table("conversations").insert({}).execute().data[0]
    message_id = user.table("messages").insert({"conversation_id": conversation["id"], "content": "anyone home?"}) \
        .execute().data[0]["id"]
    wait_until(lambda: db.execute("select error_msg from net._http_response").fetchall())  # delivery failed
    service = start_service(stack, state_dir, REDRIVE_GRACE_SECONDS="0", REDRIVE_INTERVAL_SECONDS="0.2")
    try:
        wait_until(lambda: replies_to(db, message_id))
    finally:
        service.stop()
    assert len(replies_to(db, message_id)) == 1
    assert message_state(db, message_id)[0] == "done"


def test_worker_killed_mid_generation_is_answered_once_after_its_lease(
    stack: LocalStack, state_dir: Path, db: psycopg.Connection, fake_model: FakeModelControl
) -> None:
    text = f"kill {uuid.uuid4()}"
    fake_model.queue_faults({"kind": "hang", "seconds": 4}, match=text)
    crashing = start_service(
        stack, state_dir, OPENAI_TIMEOUT_SECONDS="5", MODEL_MAX_ATTEMPTS="1", MODEL_RETRY_MAX_SECONDS="0",
        LEASE_SECONDS="5", REDRIVE_INTERVAL_SECONDS="0",
    )
    message_id, conversation_id = pending_message(db, text)
    deliver(crashing.url, stack.webhook_secret, message_event(message_id, conversation_id))
    wait_until(lambda: fake_model.requests(match=text))
    crashing.kill()
    assert message_state(db, message_id)[0] == "processing"

    survivor = start_service(stack, state_dir, REDRIVE_GRACE_SECONDS="0", REDRIVE_INTERVAL_SECONDS="0.2")
    try:
        wait_until(lambda: replies_to(db, message_id), deadline_seconds=15)
    finally:
        survivor.stop()
    assert len(replies_to(db, message_id)) == 1
    assert message_state(db, message_id) == ("done", None, 2)


def test_full_worker_pool_answers_503_and_the_sweep_answers_later(
    stack: LocalStack, state_dir: Path, db: psycopg.Connection, fake_model: FakeModelControl
) -> None:
    fake_model.set_latency(1000)
    busy = start_service(
        stack, state_dir, REPLY_CONCURRENCY="1", REPLY_QUEUE_SIZE="0", REDRIVE_GRACE_SECONDS="1",
        REDRIVE_INTERVAL_SECONDS="0.3", OPENAI_TIMEOUT_SECONDS="3", LEASE_SECONDS="12",
    )
    try:
        first, first_conversation = pending_message(db, "first in line")
        second, second_conversation = pending_message(db, "second in line")
        assert deliver(busy.url, stack.webhook_secret, message_event(first, first_conversation)).status_code == 202
        refused = deliver(busy.url, stack.webhook_secret, message_event(second, second_conversation))
        assert refused.status_code == 503
        assert refused.headers["Retry-After"]
        wait_until(lambda: replies_to(db, first) and replies_to(db, second), deadline_seconds=15)
    finally:
        busy.stop()
    assert (len(replies_to(db, first)), len(replies_to(db, second))) == (1, 1)
