"""/metrics of the service as the Procfile runs it (gunicorn, two workers: a scrape adds up both
through prometheus_client's multiprocess files), scraped with prometheus_client's own parser
around real traffic: webhook deliveries answered, the REST door, a stop, a quota refusal and a
burst of model faults. Each counter moves by exactly what happened."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from devstack.service_process import ServiceProcess
from devstack.serving import free_port
from devstack.stack import LocalStack
from tests.support.deliveries import deliver, message_event, message_state
from tests.support.metrics import METRICS_TOKEN, SCRAPE_HEADERS, key, moved, parse
from tests.support.polling import wait_until
from tests.support.processes import start_service
from tests.support.quotas import limit_user
from tests.support.realtime import ChatUser, insert_message
from tests.support.stack import FakeModelControl
from tests.support.streaming import reply_row, sse_events, words

SSE = {"Accept": "text/event-stream"}


@pytest.fixture
def scraped_service(stack: LocalStack, state_dir: Path) -> Iterator[ServiceProcess]:
    running = start_service(stack, state_dir, METRICS_TOKEN=METRICS_TOKEN, WEB_CONCURRENCY="2", REDRIVE_INTERVAL_SECONDS="0")
    yield running
    running.stop()


def scrape(service: ServiceProcess) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = httpx.get(f"{service.url}/metrics", headers=SCRAPE_HEADERS, timeout=10)
    assert response.status_code == 200, response.text
    return parse(response.text)


def answered_by_webhook(service: ServiceProcess, stack: LocalStack, db: psycopg.Connection, owner: ChatUser,
                        content: str) -> str:
    """A message written in SQL, delivered once (the database webhook points nowhere in tests), settled."""
    message_id = insert_message(db, owner, content)
    assert deliver(service.url, stack.webhook_secret, message_event(message_id, owner.conversation_id)).status_code == 202
    wait_until(lambda: message_state(db, message_id)[0] in ("done", "failed", "stopped"), deadline_seconds=20)
    return message_id


def test_counters_move_by_exactly_what_the_traffic_did(
    scraped_service: ServiceProcess, stack: LocalStack, db: psycopg.Connection, owner: ChatUser,
    fake_model: FakeModelControl,
) -> None:
    service = scraped_service
    assert httpx.get(f"{service.url}/metrics").status_code == 401
    caller = httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer {owner.access_token}"}, timeout=30)
    before = scrape(service)

    # The pipeline, through the event door.
    answered_by_webhook(service, stack, db, owner, "metrics plain")
    # The REST door, streamed: the request's own process generates it (the database webhook points nowhere in tests).
    with caller.stream("POST", f"/api/chat/{owner.conversation_id}", json={"message": "metrics rest"}, headers=SSE) as sse:
        assert sse.status_code == 200
        assert [kind for kind, _ in sse_events(sse.iter_lines())][-1] == "done"

    # A stop, through the REST door, mid-stream.
    fake_model.set_pace(first_token_ms=0, tokens_per_second=20)
    text = words(100, "mstop")
    stopped_id = insert_message(db, owner, text)
    assert deliver(service.url, stack.webhook_secret, message_event(stopped_id, owner.conversation_id)).status_code == 202
    wait_until(lambda: reply_row(db, stopped_id))
    assert caller.post(f"/api/chat/{owner.conversation_id}/messages/{stopped_id}/stop").status_code == 200
    wait_until(lambda: message_state(db, stopped_id)[0] == "stopped")
    fake_model.reset()

    # A fault burst: three server errors (out of attempts: failed), then two rate limits (answered).
    fake_model.queue_faults(*[{"kind": "server_error"}] * 3, match="burst-one")
    assert message_state(db, answered_by_webhook(service, stack, db, owner, "burst-one"))[0] == "failed"
    fake_model.queue_faults(*[{"kind": "rate_limit", "retry_after": 0.05}] * 2, match="burst-two")
    assert message_state(db, answered_by_webhook(service, stack, db, owner, "burst-two"))[0] == "done"

    # A quota refusal: one message a day, and the REST message above was it.
    limit_user(db, owner.user_id, messages_per_day=1)
    refused = caller.post(f"/api/chat/{owner.conversation_id}", json={"message": "over the quota"})
    assert (refused.status_code, refused.json()["error"]["limit"]) == (429, "messages_per_day")

    after = wait_until(lambda: (s := scrape(service)) and s[key("chat_replies_total", result="answered")]
                       - before[key("chat_replies_total", result="answered")] == 3 and s)
    tokens_in, tokens_out = db.execute(
        "select sum(prompt_tokens), sum(completion_tokens) from public.messages where role = 'assistant' and status = 'done'"
    ).fetchone()
    changes = moved(before, after)
    assert changes.pop(key("chat_reply_seconds_sum")) > 0
    assert changes.pop(key("chat_first_token_seconds_sum")) > 0
    assert changes.pop(key("chat_broadcasts_total", outcome="sent")) > 0
    assert changes.pop(key("chat_http_requests_total", route="/metrics", method="GET", status="200")) >= 1  # the scrapes
    changes.pop(key("chat_messages_pending"), None)  # read from the database, at most every 5 s
    assert changes == {
        key("chat_webhook_deliveries_total", outcome="accepted"): 4,
        key("chat_replies_total", result="answered"): 3,
        key("chat_replies_total", result="stopped"): 1,
        key("chat_replies_total", result="failed"): 1,
        key("chat_reply_seconds_count"): 5,
        key("chat_first_token_seconds_count"): 4,  # all but the failed one
        key("chat_model_calls_total", outcome="ok"): 4,
        key("chat_model_calls_total", outcome="server_error"): 3,
        key("chat_model_calls_total", outcome="rate_limited"): 2,
        key("chat_model_retries_total"): 4,
        key("chat_model_tokens_total", direction="in"): tokens_in,
        key("chat_model_tokens_total", direction="out"): tokens_out,
        key("chat_quota_refusals_total", limit="messages_per_day"): 1,
        key("chat_http_requests_total", route="/webhooks/messages", method="POST", status="202"): 4,
        key("chat_http_requests_total", route="/api/chat/<conversation_id>", method="POST", status="200"): 1,
        key("chat_http_requests_total", route="/api/chat/<conversation_id>", method="POST", status="429"): 1,
        key("chat_http_requests_total", route="/api/chat/<conversation_id>/messages/<message_id>/stop", method="POST",
            status="200"): 1,
    }
    assert after[key("chat_active_streams")] == 0
    assert after[key("chat_messages_pending")] == 0
    text = httpx.get(f"{service.url}/metrics", headers=SCRAPE_HEADERS).text
    assert owner.conversation_id not in text and stopped_id not in text and owner.user_id not in text


def test_the_private_metrics_port_needs_no_token_and_the_public_one_does(stack: LocalStack, state_dir: Path) -> None:
    """Fly.io's scraper sends no credentials: it scrapes METRICS_PORT over the private network."""
    port = free_port()
    service = start_service(stack, state_dir, METRICS_PORT=str(port))
    try:
        private = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert private.status_code == 200
        assert key("chat_replies_total", result="answered") in parse(private.text)
        public = httpx.get(f"{service.url}/metrics", headers={"Host": f"127.0.0.1:{port}"}, timeout=10)
        assert public.status_code == 401
    finally:
        service.stop()
