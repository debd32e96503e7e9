"""What one fake server remembers: its latency, the queue of injected faults and the log of
requests it received, shared by the handlers and by in-process callers."""

from __future__ import annotations

import itertools
import math
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

FAKE_MODEL_ID = "fake-model"
LATENCY_ENV_VAR = "FAKE_OPENAI_LATENCY_MS"
TOKENS_PER_SECOND_ENV_VAR = "FAKE_OPENAI_TOKENS_PER_SECOND"
DEFAULT_RETRY_AFTER_S = 1.0
DEFAULT_HANG_S = 30.0
REPLY_PREFIX = "Echo: "

DEFAULT_STREAM_ERROR_AFTER = 3

FaultKind = Literal["rate_limit", "server_error", "hang", "insufficient_quota", "bad_request", "stream_error"]
FAULT_KINDS: tuple[FaultKind, ...] = (
    "rate_limit",
    "server_error",
    "hang",
    "insufficient_quota",
    "bad_request",
    "stream_error",  # a streamed reply that breaks off with an error event after `after_tokens` pieces
)

JsonDict = dict[str, Any]


@dataclass(frozen=True)
class Fault:
    """One injected failure waiting in the FIFO queue.

    ``match`` restricts which request may consume it (substring of the last user
    message), so concurrent tests or multi-message flows can target one request.
    """

    kind: FaultKind
    match: str | None = None
    retry_after: float = DEFAULT_RETRY_AFTER_S
    seconds: float = DEFAULT_HANG_S
    after_tokens: int = DEFAULT_STREAM_ERROR_AFTER

    def applies_to(self, user_text: str) -> bool:
        """Tell whether a request with this last user message may consume the fault."""
        return self.match is None or self.match in user_text


@dataclass
class RecordedRequest:
    """A completion request as the fake saw it, kept so tests can assert on traffic."""

    model: Any
    messages: Any
    stream: bool
    received_at: float
    outcome: str
    user_text: str
    # For streamed answers: how many content pieces went out, and how the stream ended
    # ("complete", "client_closed", "error") and when. A client that stops reading is counted
    # here, which is how the tests prove that a stopped reply stops the provider's billing.
    tokens_sent: int = 0
    stream_end: str | None = None
    stream_ended_at: float | None = None
    max_tokens: Any = None  # as the request sent it: what a reply may cost the caller

    def to_json(self) -> JsonDict:
        """Return the public JSON form (the matching helper field stays private)."""
        return {
            "model": self.model,
            "messages": self.messages,
            "stream": self.stream,
            "received_at": self.received_at,
            "outcome": self.outcome,
            "tokens_sent": self.tokens_sent,
            "stream_end": self.stream_end,
            "stream_ended_at": self.stream_ended_at,
            "max_tokens": self.max_tokens,
        }


class FakeModelState:
    """Mutable state of one fake server: latency, queued faults, request log, ids.

    Why a class: tests reset it between cases over HTTP, and in-process users can
    also poke it directly. A lock makes those direct calls from another thread
    safe; handlers never await while holding it, so the event loop never blocks.
    """

    def __init__(self, default_latency_ms: float = 0.0, default_tokens_per_second: float = 0.0) -> None:
        self.default_latency_ms = validate_latency(default_latency_ms)
        self.default_tokens_per_second = validate_non_negative(default_tokens_per_second, "tokens_per_second")
        self._lock = threading.Lock()
        self._latency_ms = self.default_latency_ms
        self._tokens_per_second = self.default_tokens_per_second
        self._faults: list[Fault] = []
        self._requests: list[RecordedRequest] = []
        self._ids = itertools.count(1)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> FakeModelState:
        """Build state whose defaults come from ``FAKE_OPENAI_LATENCY_MS`` and
        ``FAKE_OPENAI_TOKENS_PER_SECOND``."""
        return cls(
            default_latency_ms=latency_ms_from_env(environ),
            default_tokens_per_second=_number_from_env(environ, TOKENS_PER_SECOND_ENV_VAR),
        )

    @property
    def latency_ms(self) -> float:
        """Simulated latency: before the whole JSON answer, or before the first streamed token
        (the time to first token; the response headers and the role chunk go out at once)."""
        return self._latency_ms

    def set_latency_ms(self, latency_ms: float) -> None:
        """Change the latency at runtime (what ``POST /_fake/config`` calls)."""
        self._latency_ms = validate_latency(latency_ms)

    @property
    def tokens_per_second(self) -> float:
        """Pace of a streamed reply after its first token; 0 sends every piece at once."""
        return self._tokens_per_second

    def set_tokens_per_second(self, tokens_per_second: float) -> None:
        self._tokens_per_second = validate_non_negative(tokens_per_second, "tokens_per_second")

    def add_faults(self, faults: Sequence[Fault]) -> int:
        """Append faults to the FIFO queue and return how many are now pending."""
        with self._lock:
            self._faults.extend(faults)
            return len(self._faults)

    def pending_faults(self) -> list[Fault]:
        """Snapshot of the queue, oldest first."""
        with self._lock:
            return list(self._faults)

    def take_fault(self, user_text: str) -> Fault | None:
        """Remove and return the first queued fault this request is allowed to consume."""
        with self._lock:
            for index, fault in enumerate(self._faults):
                if fault.applies_to(user_text):
                    return self._faults.pop(index)
            return None

    def record_request(
        self, *, model: Any, messages: Any, stream: bool, outcome: str, user_text: str, max_tokens: Any = None
    ) -> RecordedRequest:
        """Append a request to the log at arrival time (before any simulated delay)."""
        entry = RecordedRequest(model, messages, stream, time.time(), outcome, user_text, max_tokens=max_tokens)
        with self._lock:
            self._requests.append(entry)
        return entry

    def recorded_requests(self, match: str | None = None) -> list[RecordedRequest]:
        """Requests in arrival order, optionally only those whose last user text matches."""
        with self._lock:
            entries = list(self._requests)
        if match is None:
            return entries
        return [entry for entry in entries if match in entry.user_text]

    def next_id(self, prefix: str) -> str:
        """Deterministic, unique ids (``chatcmpl-fake-000001``) so logs are readable."""
        with self._lock:
            return f"{prefix}-fake-{next(self._ids):06d}"

    def reset(self) -> None:
        """Forget faults and requests and restore the default latency and id counter."""
        with self._lock:
            self._faults.clear()
            self._requests.clear()
            self._latency_ms = self.default_latency_ms
            self._tokens_per_second = self.default_tokens_per_second
            self._ids = itertools.count(1)


def latency_ms_from_env(environ: Mapping[str, str] | None = None) -> float:
    """Read the default latency from ``FAKE_OPENAI_LATENCY_MS`` (0 when unset)."""
    return _number_from_env(environ, LATENCY_ENV_VAR)


def _number_from_env(environ: Mapping[str, str] | None, name: str) -> float:
    env = os.environ if environ is None else environ
    raw = env.get(name, "").strip()
    if not raw:
        return 0.0
    try:
        return validate_non_negative(float(raw), name)
    except ValueError as exc:
        raise ValueError(f"{name} must be a non-negative number, got {raw!r}") from exc


def validate_latency(latency_ms: float) -> float:
    """Reject negative/NaN latency early, where the mistake is made."""
    return validate_non_negative(latency_ms, "latency_ms")


def validate_non_negative(value: float, name: str) -> float:
    if not is_non_negative_number(value):
        raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    return float(value)


def is_non_negative_number(value: object) -> bool:
    """True for finite ints/floats >= 0 (bools excluded: ``True`` is not a duration)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value) and value >= 0
