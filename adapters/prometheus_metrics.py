"""chat.metrics.ServiceMetrics on prometheus_client, and the text /metrics serves.

Under gunicorn every worker process counts into files in PROMETHEUS_MULTIPROC_DIR
(gunicorn.conf.py sets it before anything imports prometheus_client, and marks a dead worker's
files), and a scrape, whichever worker answers it, adds up all of them. Without that variable
(one process: the in-process tests) the numbers live in this object's own registry.

The pending-messages gauge is not counted but read: a count from the database, at most once per
`pending_ttl_seconds` however often Prometheus (or a storm of scrapers) asks."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from chat.errors import ChatError
from chat.logging import get_logger
from chat.metrics import QUOTA_LIMITS

logger = get_logger(__name__)
REPLY_BUCKETS = (0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)
FIRST_TOKEN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 45)

# Label values known in advance appear at 0 from the first scrape, so a rate() has a baseline.
WEBHOOK_OUTCOMES = ("accepted", "busy", "shutting_down", "ignored", "invalid_signature", "invalid_payload")
REPLY_RESULTS = ("answered", "failed", "stopped", "not_claimed", "waiting", "deferred")
MODEL_OUTCOMES = ("ok", "rate_limited", "quota", "server_error", "rejected", "timeout", "unreachable", "broke_off")


class PrometheusMetrics:
    def __init__(
        self,
        count_pending: Callable[[], int] | None = None,
        pending_ttl_seconds: float = 5.0,
        multiprocess_dir: str | None = None,
    ) -> None:
        """`multiprocess_dir` is PROMETHEUS_MULTIPROC_DIR, which prometheus_client itself read when
        first imported: both must agree (gunicorn.conf.py sets it before any worker starts)."""
        self.registry = CollectorRegistry(auto_describe=True)
        self.multiprocess_dir = multiprocess_dir
        r = self.registry
        self._webhooks = Counter("chat_webhook_deliveries", "Webhook deliveries by outcome.", ["outcome"], registry=r)
        self._replies = Counter("chat_replies", "Reply attempts by how they ended.", ["result"], registry=r)
        self._reply_seconds = Histogram(
            "chat_reply_seconds", "From a claimed message's answer starting to its reply settled.", buckets=REPLY_BUCKETS,
            registry=r,
        )
        self._first_token_seconds = Histogram(
            "chat_first_token_seconds", "From an answer starting to its first piece of text.", buckets=FIRST_TOKEN_BUCKETS,
            registry=r,
        )
        self._model_calls = Counter("chat_model_calls", "Requests to the model by outcome (ok or the error's kind).",
                                    ["outcome"], registry=r)
        self._model_retries = Counter("chat_model_retries", "Model requests tried again after a failure.", registry=r)
        self._tokens = Counter("chat_model_tokens", "Tokens of finished replies, in (prompt) and out (completion).",
                               ["direction"], registry=r)
        self._superseded = Counter("chat_claims_superseded", "Writes refused because another attempt holds the message.",
                                   registry=r)
        self._redriven = Counter("chat_redriven_messages", "Stalled messages the sweep handed to the reply engine.",
                                 registry=r)
        self._streams = Gauge("chat_active_streams", "Replies streaming now.", registry=r, multiprocess_mode="livesum")
        self._broadcasts = Counter("chat_broadcasts", "Realtime broadcast messages by outcome (sent, lost).",
                                   ["outcome"], registry=r)
        self._quota = Counter("chat_quota_refusals", "Caller messages or conversations refused by a usage limit.",
                              ["limit"], registry=r)
        self._http = Counter("chat_http_requests", "HTTP requests by route, method and status.",
                             ["route", "method", "status"], registry=r)
        for outcome in WEBHOOK_OUTCOMES:
            self._webhooks.labels(outcome)
        for result in REPLY_RESULTS:
            self._replies.labels(result)
        for outcome in MODEL_OUTCOMES:
            self._model_calls.labels(outcome)
        for direction in ("in", "out"):
            self._tokens.labels(direction)
        for outcome in ("sent", "lost"):
            self._broadcasts.labels(outcome)
        for limit in (*QUOTA_LIMITS, "other"):
            self._quota.labels(limit)
        self._pending = PendingMessages(count_pending, pending_ttl_seconds) if count_pending else None
        if self._pending is not None:
            r.register(self._pending)

    # --- chat.metrics.ServiceMetrics -----------------------------------------------------------

    def webhook_delivery(self, outcome: str) -> None:
        self._webhooks.labels(outcome).inc()

    def reply_finished(self, result: str, seconds: float | None) -> None:
        self._replies.labels(result).inc()
        if seconds is not None:
            self._reply_seconds.observe(seconds)

    def first_token(self, seconds: float) -> None:
        self._first_token_seconds.observe(seconds)

    def model_call(self, outcome: str) -> None:
        self._model_calls.labels(outcome).inc()

    def model_retry(self) -> None:
        self._model_retries.inc()

    def tokens(self, prompt_tokens: int, completion_tokens: int) -> None:
        if prompt_tokens:
            self._tokens.labels("in").inc(prompt_tokens)
        if completion_tokens:
            self._tokens.labels("out").inc(completion_tokens)

    def claim_superseded(self) -> None:
        self._superseded.inc()

    def redriven(self, count: int) -> None:
        self._redriven.inc(count)

    def stream_opened(self) -> None:
        self._streams.inc()

    def stream_closed(self) -> None:
        self._streams.dec()

    def broadcasts(self, sent: int, lost: int) -> None:
        if sent:
            self._broadcasts.labels("sent").inc(sent)
        if lost:
            self._broadcasts.labels("lost").inc(lost)

    def quota_refused(self, limit: str) -> None:
        self._quota.labels(limit).inc()

    def http_request(self, route: str, method: str, status: int) -> None:
        self._http.labels(route, method, str(status)).inc()

    # --- the scrape ----------------------------------------------------------------------------

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition and its content type."""
        if self.multiprocess_dir is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.multiprocess_dir)
        if self._pending is not None:
            registry.register(self._pending)
        return generate_latest(registry), CONTENT_TYPE_LATEST


class PendingMessages(Collector):
    """`chat_messages_pending`: user messages waiting for a reply, counted in the database at
    most once per `ttl_seconds`. While the database cannot answer, the gauge is left out of the
    scrape (an alert on it then sees no data rather than a stale number)."""

    def __init__(self, count: Callable[[], int], ttl_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._count = count
        self._ttl = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._value: int | None = None
        self._read_at: float | None = None

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        value = self.current()
        if value is not None:
            yield GaugeMetricFamily("chat_messages_pending", "User messages waiting for a reply (from the database).", value)

    def current(self) -> int | None:
        with self._lock:  # one reader at a time: concurrent scrapes share one count
            now = self._clock()
            if self._read_at is None or now - self._read_at >= self._ttl:
                self._read_at = now
                try:
                    self._value = self._count()
                except ChatError as error:
                    logger.warning("could not count pending messages", reason=str(error))
                    self._value = None
            return self._value
