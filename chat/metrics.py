"""What the service counts for its operator, as one port: the domain and the doors say what
happened, an adapter (adapters/prometheus_metrics.py) keeps the numbers and serves /metrics.

Every label takes a value from a short fixed list (an outcome, a status, a route's rule), never
a user, conversation or message id: a scrape stays the same size however many users there are.
Calls that run on the reply engine's loop are made once per reply or per request, never per
token, so counting costs nothing a reply would notice."""

from __future__ import annotations

from typing import Protocol

# The usage limits a refusal can name (the database's `limit`, and the conversation cap).
QUOTA_LIMITS = ("messages_per_window", "messages_per_day", "tokens_per_day", "conversations")


def quota_limit_label(limit: str) -> str:
    """A refusal's limit as a bounded label: a name the database adds later counts as `other`."""
    return limit if limit in QUOTA_LIMITS else "other"


class ServiceMetrics(Protocol):
    def webhook_delivery(self, outcome: str) -> None:
        """accepted, busy, shutting_down, ignored, invalid_signature or invalid_payload."""

    def reply_finished(self, result: str, seconds: float | None) -> None:
        """One `ReplyPipeline.answer` ended with this AnswerResult value; `seconds` from its start,
        for replies this process claimed (None otherwise: nothing was generated)."""

    def first_token(self, seconds: float) -> None:
        """A streamed reply's first piece of text, `seconds` after its answer started."""

    def model_call(self, outcome: str) -> None:
        """One request to the model: ok, or the kind of failure (adapters/model_errors.py)."""

    def model_retry(self) -> None:
        """A failed model request is tried again."""

    def tokens(self, prompt_tokens: int, completion_tokens: int) -> None:
        """A finished reply's usage, as the provider reported it."""

    def claim_superseded(self) -> None:
        """The database refused a write of ours: another attempt holds the message (fencing)."""

    def redriven(self, count: int) -> None:
        """The sweep handed stalled messages to the reply engine."""

    def stream_opened(self) -> None:
        """A reply began streaming in this process (the active streams gauge goes up)."""

    def stream_closed(self) -> None:
        """That stream ended, however it ended."""

    def broadcasts(self, sent: int, lost: int) -> None:
        """Realtime broadcast messages sent, or lost with their request."""

    def quota_refused(self, limit: str) -> None:
        """The database refused a caller's message or conversation: a usage limit (one of
        QUOTA_LIMITS)."""

    def http_request(self, route: str, method: str, status: int) -> None:
        """One HTTP request answered; `route` is the URL rule, never the path itself."""

    def render(self) -> tuple[bytes, str]:
        """What a scrape of /metrics gets, and its content type."""


class NoMetrics:
    """Counts nothing: tests that do not look, and a service run without /metrics."""

    def webhook_delivery(self, outcome: str) -> None:
        pass

    def reply_finished(self, result: str, seconds: float | None) -> None:
        pass

    def first_token(self, seconds: float) -> None:
        pass

    def model_call(self, outcome: str) -> None:
        pass

    def model_retry(self) -> None:
        pass

    def tokens(self, prompt_tokens: int, completion_tokens: int) -> None:
        pass

    def claim_superseded(self) -> None:
        pass

    def redriven(self, count: int) -> None:
        pass

    def stream_opened(self) -> None:
        pass

    def stream_closed(self) -> None:
        pass

    def broadcasts(self, sent: int, lost: int) -> None:
        pass

    def quota_refused(self, limit: str) -> None:
        pass

    def http_request(self, route: str, method: str, status: int) -> None:
        pass

    def render(self) -> tuple[bytes, str]:
        return b"", "text/plain; charset=utf-8"


NO_METRICS: ServiceMetrics = NoMetrics()
