"""What an operator sees, in process on fakes: /metrics (scraped and parsed as Prometheus does)
moving by exactly what happened, who may scrape it, the pending gauge's cache, readiness's
cache, and the request id on the response and on every log line of a request and its reply."""

from __future__ import annotations

import io
import json
import logging
import re
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families

from adapters.prometheus_metrics import PendingMessages, PrometheusMetrics
from chat.caller import Caller
from chat.errors import ModelRejected, RateLimited, StoreUnavailable
from chat.readiness import Readiness
from http_common.service import chat_service
from tests.support.deliveries import message_event, signed_headers
from tests.support.doors import USER_ID, token
from tests.support.fakes import InMemoryCallerStore
from tests.support.in_process import WEBHOOK_SECRET, FakeChat, fake_chat, unit_settings
from tests.support.metrics import METRICS_TOKEN, SCRAPE_HEADERS, key, moved, parse
from tests.support.polling import wait_until


class Operated:
    """The app on fakes with real metrics (prometheus_client, one process) and /metrics served."""

    def __init__(self, **settings: Any) -> None:
        self.settings = unit_settings(metrics_token=METRICS_TOKEN, **settings)
        self.metrics = PrometheusMetrics(count_pending=lambda: self.chat.store.count_pending_messages(), pending_ttl_seconds=0)
        self.chat: FakeChat = fake_chat(self.settings, metrics=self.metrics)
        self.client = self.chat.app(self.settings).test_client()
        self.conversation_id = self.chat.database.add_conversation(USER_ID)
        self.auth = {"Authorization": f"Bearer {token()}"}

    def scrape(self) -> dict[Any, float]:
        response = self.client.get("/metrics", headers=SCRAPE_HEADERS)
        assert response.status_code == 200, response.data
        return parse(response.get_data(as_text=True))

    def deliver(self, body: bytes | None = None, conversation_id: str | None = None, **header_changes: str) -> Any:
        conversation_id = conversation_id or self.conversation_id
        message_id = self.chat.database.add_message(conversation_id)
        body = body if body is not None else message_event(message_id, conversation_id)
        headers = {**signed_headers(WEBHOOK_SECRET, body, message_id=f"msg_{message_id}"), **header_changes}
        return self.client.post("/webhooks/messages", data=body, headers=headers)

    def idle(self) -> None:
        wait_until(lambda: self.chat.service.engine.in_flight() == 0)


@pytest.fixture
def operated() -> Iterator[Operated]:
    running = Operated()
    yield running
    running.chat.service.close()


# ----------------------------------------------------------------------------- who may scrape


class ArrivedOn:
    """gunicorn's socket of a request, as /metrics reads its local port."""

    def __init__(self, port: int) -> None:
        self.port = port

    def getsockname(self) -> tuple[str, int]:
        return ("10.0.0.1", self.port)


PRIVATE_PORT = 9091


@pytest.mark.parametrize(
    ("settings", "headers", "arrived_on", "status"),
    [
        pytest.param({}, SCRAPE_HEADERS, None, 404, id="neither METRICS_TOKEN nor METRICS_PORT: not served"),
        pytest.param({"metrics_token": METRICS_TOKEN}, {}, None, 401, id="no token"),
        pytest.param({"metrics_token": METRICS_TOKEN}, {"Authorization": "Bearer wrong"}, None, 401, id="wrong token"),
        pytest.param({"metrics_token": METRICS_TOKEN}, {"Authorization": f"Basic {METRICS_TOKEN}"}, None, 401,
                     id="not a bearer token"),
        pytest.param({"metrics_token": METRICS_TOKEN}, SCRAPE_HEADERS, None, 200, id="the token"),
        pytest.param({"metrics_port": PRIVATE_PORT}, {}, PRIVATE_PORT, 200, id="on the private port: no token needed"),
        pytest.param({"metrics_port": PRIVATE_PORT}, {}, 8000, 401, id="METRICS_PORT set, asked on the public port"),
        pytest.param({"metrics_port": PRIVATE_PORT}, {"Host": f"x:{PRIVATE_PORT}"}, 8000, 401,
                     id="a Host header naming the private port proves nothing"),
        pytest.param({"metrics_port": PRIVATE_PORT, "metrics_token": METRICS_TOKEN}, SCRAPE_HEADERS, 8000, 200,
                     id="both: the token on the public port"),
    ],
)
def test_metrics_are_served_only_to_their_scraper(
    settings: dict[str, Any], headers: dict[str, str], arrived_on: int | None, status: int
) -> None:
    configured = unit_settings(**settings)
    chat = fake_chat(configured, metrics=PrometheusMetrics())
    environ = {"gunicorn.socket": ArrivedOn(arrived_on)} if arrived_on else {}
    try:
        response = chat.app(configured).test_client().get("/metrics", headers=headers, environ_base=environ)
        assert response.status_code == status
        if status == 200:
            assert response.content_type.startswith("text/plain; version=")
            assert key("chat_replies_total", result="answered") in parse(response.get_data(as_text=True))
    finally:
        chat.service.close()


# ----------------------------------------------------------------------------- what moves


def test_counters_move_by_exactly_what_happened(operated: Operated) -> None:
    before = operated.scrape()

    answered = operated.deliver()  # accepted, streamed, answered
    assert answered.status_code == 202
    operated.idle()
    # In a conversation of their own: the messages they leave pending would hold up the next ones.
    aside = operated.chat.database.add_conversation(USER_ID)
    assert operated.deliver(conversation_id=aside, **{"webhook-signature": "v1,Zm9yZ2Vk"}).status_code == 401
    assistant_row = message_event(str(uuid.uuid4()), aside, role="assistant")
    assert operated.deliver(assistant_row, aside).status_code == 200  # ignored

    operated.chat.model.script.append(ModelRejected("The AI model rejected this conversation (400): no."))
    failed = operated.client.post(f"/api/chat/{operated.conversation_id}", json={"message": "fail"}, headers=operated.auth)
    assert failed.status_code == 502
    operated.idle()

    refused = _rate_limited_request(operated)
    assert refused.status_code == 429

    stopped_id = _stop_mid_stream(operated)
    broadcasts = len(operated.chat.broadcaster.events())

    after = operated.scrape()
    changes = moved(before, after)
    assert changes.pop(key("chat_reply_seconds_sum")) > 0
    assert changes.pop(key("chat_first_token_seconds_sum")) > 0
    assert changes == {
        key("chat_webhook_deliveries_total", outcome="accepted"): 3,  # the webhook's, the REST message's, the stopped one
        key("chat_webhook_deliveries_total", outcome="invalid_signature"): 1,
        key("chat_webhook_deliveries_total", outcome="ignored"): 1,
        key("chat_replies_total", result="answered"): 1,
        key("chat_replies_total", result="failed"): 1,
        key("chat_replies_total", result="stopped"): 1,
        key("chat_reply_seconds_count"): 3,
        key("chat_first_token_seconds_count"): 2,  # the answered and the stopped reply
        key("chat_model_tokens_total", direction="in"): 3,  # the fake reports 3 in, 2 out per finished reply
        key("chat_model_tokens_total", direction="out"): 2,
        key("chat_broadcasts_total", outcome="sent"): broadcasts,
        key("chat_quota_refusals_total", limit="messages_per_window"): 1,
        key("chat_http_requests_total", route="/metrics", method="GET", status="200"): 1,
        key("chat_http_requests_total", route="/webhooks/messages", method="POST", status="202"): 1,
        key("chat_http_requests_total", route="/webhooks/messages", method="POST", status="401"): 1,
        key("chat_http_requests_total", route="/webhooks/messages", method="POST", status="200"): 1,
        key("chat_http_requests_total", route="/api/chat/<conversation_id>", method="POST", status="502"): 1,
        key("chat_http_requests_total", route="/api/chat/<conversation_id>", method="POST", status="429"): 1,
        key("chat_http_requests_total", route="/api/chat/<conversation_id>/messages/<message_id>/stop", method="POST",
            status="200"): 1,
        # The forged delivery's message and the one under the ignored event were never answered.
        key("chat_messages_pending"): 2,
    }
    assert after[key("chat_active_streams")] == 0
    text = operated.client.get("/metrics", headers=SCRAPE_HEADERS).get_data(as_text=True)
    assert operated.conversation_id not in text and stopped_id not in text, "labels never carry ids"


def _rate_limited_request(operated: Operated) -> Any:
    store = chat_service(operated.client.application).caller_store(Caller(USER_ID, token()))
    assert isinstance(store, InMemoryCallerStore)
    store.fail_next("insert_message", RateLimited(9, "Too many messages: at most 1 per 60 s.", "messages_per_window"))
    return operated.client.post(f"/api/chat/{operated.conversation_id}", json={"message": "one more"}, headers=operated.auth)


def _stop_mid_stream(operated: Operated) -> str:
    """A reply held after its first piece, stopped through the REST door."""
    gate = operated.chat.model.gate_between_pieces = threading.Event()
    try:
        message_id = operated.chat.database.add_message(operated.conversation_id, "a long answer please")
        assert operated.chat.service.accept_delivery(message_id).value == "accepted"
        streaming = operated.chat.service.streaming
        assert streaming is not None
        wait_until(lambda: message_id in streaming.live.streaming() and streaming.live._replies[message_id].row_begun)
        stop = operated.client.post(
            f"/api/chat/{operated.conversation_id}/messages/{message_id}/stop", headers=operated.auth
        )
        assert stop.status_code == 200, stop.data
    finally:
        gate.set()
    operated.idle()
    assert operated.chat.database.messages[message_id].status == "stopped"
    operated.chat.model.gate_between_pieces = None
    return message_id


# ----------------------------------------------------------------------------- pending messages


def test_pending_messages_are_counted_in_the_database_at_most_once_per_interval() -> None:
    counts = iter([4, 7])
    calls: list[float] = []
    now = [100.0]

    def count() -> int:
        calls.append(now[0])
        return next(counts)

    pending = PendingMessages(count, ttl_seconds=5, clock=lambda: now[0])
    assert [pending.current() for _ in range(50)] == [4] * 50  # a scrape storm: one count
    now[0] += 5
    assert pending.current() == 7
    assert calls == [100.0, 105.0]


def test_pending_messages_are_left_out_while_the_database_cannot_count() -> None:
    def count() -> int:
        raise StoreUnavailable("connection refused")

    assert list(PendingMessages(count, ttl_seconds=0).collect()) == []


# ----------------------------------------------------------------------------- readiness's cache


def test_readiness_asks_the_dependencies_at_most_once_per_interval() -> None:
    asked: list[str] = []
    now = [0.0]
    readiness = Readiness({"database": lambda: asked.append("database")}, ttl_seconds=2, clock=lambda: now[0])
    for _ in range(100):
        assert readiness.check() == {"database": "ok"}
    now[0] += 2
    readiness.check()
    assert asked == ["database", "database"]


# ----------------------------------------------------------------------------- request ids


@pytest.fixture
def log_lines(operated: Operated) -> Iterator[io.StringIO]:
    """Every structlog line the app writes from now on, as JSON (after the app configured logging)."""
    captured = io.StringIO()
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        logger_factory=structlog.PrintLoggerFactory(captured),
        cache_logger_on_first_use=False,
    )
    yield captured
    structlog.reset_defaults()


def _lines(captured: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in captured.getvalue().splitlines() if line.startswith("{")]


@pytest.mark.parametrize(
    ("sent", "echoed"),
    [
        pytest.param("req-42.abc", "req-42.abc", id="the caller's id, echoed"),
        pytest.param("a b\tc", None, id="not a plain token: a new one"),
        pytest.param("x" * 65, None, id="too long: a new one"),
        pytest.param(None, None, id="none sent: a new one"),
    ],
)
def test_every_response_carries_a_request_id(operated: Operated, sent: str | None, echoed: str | None) -> None:
    response = operated.client.get("/healthz", headers={"X-Request-ID": sent} if sent else {})
    request_id = response.headers["X-Request-ID"]
    assert request_id == echoed if echoed else len(request_id) == 32 and request_id != sent


def test_a_delivery_and_its_reply_log_under_the_webhook_id(operated: Operated, log_lines: io.StringIO) -> None:
    operated.chat.model.script.append(ModelRejected("The AI model rejected this conversation (400): no."))
    response = operated.deliver(**{"X-Request-ID": "ignored-for-webhooks"})
    webhook_id = response.headers["X-Request-ID"]
    assert webhook_id.startswith("msg_")
    operated.idle()
    reply_lines = [line for line in _lines(log_lines) if line.get("message_id") == response.get_json()["message_id"]]
    assert reply_lines, "the reply logged nothing"
    assert {line["event"] for line in reply_lines} >= {"model gave no reply; marking message failed"}
    assert {line.get("request_id") for line in reply_lines} == {webhook_id}


def test_a_rest_request_and_its_reply_log_under_its_request_id(operated: Operated, log_lines: io.StringIO) -> None:
    operated.chat.model.script.append(ModelRejected("The AI model rejected this conversation (400): no."))
    response = operated.client.post(
        f"/api/chat/{operated.conversation_id}", json={"message": "hi"},
        headers={**operated.auth, "X-Request-ID": "rest-7"},
    )
    assert (response.status_code, response.headers["X-Request-ID"]) == (502, "rest-7")
    operated.idle()
    pipeline_lines = [line for line in _lines(log_lines) if "message_id" in line]
    assert pipeline_lines and {line.get("request_id") for line in pipeline_lines} == {"rest-7"}


# ----------------------------------------------------------------------------- the docs


ROOT = Path(__file__).resolve().parents[2]


def test_the_dashboard_and_the_readme_name_only_metrics_that_are_served() -> None:
    served: set[str] = set()
    metrics = PrometheusMetrics(count_pending=lambda: 0)
    metrics.http_request("/healthz", "GET", 200)  # the one family with no label values known in advance
    for family in text_string_to_metric_families(metrics.render()[0].decode()):
        served.add(family.name)
        served.update(sample.name for sample in family.samples)
    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    expressions = " ".join(target["expr"] for panel in dashboard["panels"] for target in panel["targets"])
    running_it = (ROOT / "README.md").read_text().split("## Running it", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"\bchat_[a-z_]+", expressions + running_it))
    assert named and named <= served, f"not served: {sorted(named - served)}"
    assert {"chat_first_token_seconds_bucket", "chat_messages_pending", "chat_replies_total"} <= set(
        re.findall(r"\bchat_[a-z_]+", expressions)
    )
