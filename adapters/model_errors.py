"""The one table from what the model's provider answered (an HTTP status with OpenAI's error code
or type, or a failure with no answer at all) to the domain's named errors: whether it is worth
another attempt, and the message the user reads when it is not or when attempts run out.

OpenAI's error body is `{"error": {"message", "type", "param", "code"}}`
(https://platform.openai.com/docs/guides/error-codes); compatible servers send the same shape."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp

from chat.errors import ModelError, ModelRejected, ModelUnavailable

# Failures that come with no HTTP status, in the table's status column.
TIMED_OUT = "timed out"
UNREACHABLE = "unreachable"  # refused, reset, or an answer that could not be read
BROKE_OFF = "broke off"  # the error event OpenAI sends when a stream fails after it started

PROVIDER_MESSAGE_LIMIT = 300
# A reply with no text: the model answered, so it is not retried; the user may send again.
EMPTY_REPLY = "The AI model returned an empty reply. Please send your message again."


@dataclass(frozen=True)
class Meaning:
    retried: bool
    error: type[ModelError]
    message: str  # what the user reads; {status} and {provider_message} are filled in
    kind: str  # the failure's kind in the operator's metrics (chat_model_calls_total{outcome})


# (status: an HTTP status, "4xx", "5xx" or one of the failures above; OpenAI's error code or
# type, or None for any) -> what it means. First match wins.
PROVIDER_ERRORS: tuple[tuple[int | str, str | None, Meaning], ...] = (
    # A 429 is a rate limit, unless the account's quota is used up: no retry brings credit back.
    (429, "insufficient_quota", Meaning(False, ModelRejected,
        "The AI provider's quota for this service is used up; the service's owner needs to add credit.", "quota")),
    (429, None, Meaning(True, ModelUnavailable, "The AI model is busy (rate limited). Please send your message again.",
                           "rate_limited")),
    ("5xx", None, Meaning(True, ModelUnavailable, "The AI model had a server error. Please send your message again.",
                              "server_error")),
    # Any other refusal (bad request, auth, unknown model, context too long) says what is wrong.
    ("4xx", None, Meaning(False, ModelRejected, "The AI model rejected this conversation ({status}): {provider_message}",
                              "rejected")),
    (TIMED_OUT, None, Meaning(True, ModelUnavailable, "The AI model did not answer in time. Please send your message again.",
                              "timeout")),
    (UNREACHABLE, None, Meaning(True, ModelUnavailable, "The AI model did not answer in time. Please send your message again.",
                                "unreachable")),
    (BROKE_OFF, None, Meaning(True, ModelUnavailable, "The AI model's reply broke off. Please send your message again.",
                              "broke_off")),
)


class ProviderFailure(Exception):
    """One failed attempt, as the provider or the network showed it: what the retry layer reads
    (`retried`, `retry_after`) before `model_error` turns the last one into the domain's error."""

    def __init__(
        self,
        status: int | str,
        provider_message: str,
        codes: tuple[str, ...] = (),
        retry_after: float | None = None,
    ) -> None:
        super().__init__(" ".join([str(status), *codes]) + f": {provider_message}")
        self.status = status
        self.codes = codes  # OpenAI's error code and type, those it sent
        self.provider_message = provider_message
        self.retry_after = retry_after  # seconds the provider asked us to wait, if it said
        self.meaning = meaning_of(status, codes)

    @property
    def retried(self) -> bool:
        return self.meaning.retried


def meaning_of(status: int | str, codes: tuple[str, ...] = ()) -> Meaning:
    status_class = f"{status // 100}xx" if isinstance(status, int) else status
    for listed_status, listed_code, meaning in PROVIDER_ERRORS:
        if listed_status in (status, status_class) and (listed_code is None or listed_code in codes):
            return meaning
    # Not a success and not listed (a redirect left unfollowed, say): the provider refused it.
    return meaning_of(400, codes)


def model_error(failure: ProviderFailure) -> ModelError:
    message = failure.meaning.message.format(
        status=failure.status, provider_message=failure.provider_message[:PROVIDER_MESSAGE_LIMIT]
    )
    return failure.meaning.error(message, str(failure))


def status_failure(status: int, body: bytes, headers: Mapping[str, str]) -> ProviderFailure:
    """A non-2xx answer: its error code or type, its message, and any Retry-After."""
    error: object = None
    try:
        parsed = json.loads(body)
        error = parsed.get("error", parsed) if isinstance(parsed, dict) else None
    except ValueError:
        pass
    text = body.decode("utf-8", "replace").strip()
    if isinstance(error, dict):
        codes = tuple(str(error[key]) for key in ("code", "type") if error.get(key))
        return ProviderFailure(status, str(error.get("message") or text), codes, retry_after_seconds(headers))
    return ProviderFailure(status, str(error or text or f"Error code: {status}"), (), retry_after_seconds(headers))


def stream_error_failure(error: object) -> ProviderFailure:
    """The error event of a stream that had started: the provider broke off."""
    message = error.get("message") if isinstance(error, dict) else None
    return ProviderFailure(BROKE_OFF, str(message or "An error occurred during streaming"))


def transport_failure(error: BaseException) -> ProviderFailure:
    """A request that got no (readable) answer: it timed out, or the connection failed."""
    if isinstance(error, asyncio.TimeoutError):  # aiohttp's timeouts are TimeoutErrors too
        return ProviderFailure(TIMED_OUT, type(error).__name__)
    return ProviderFailure(UNREACHABLE, f"{type(error).__name__}: {error}")


TRANSPORT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, ValueError)
"""What a request or a read raises when there is no usable answer (ValueError: a body that is
not the JSON it should be)."""


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """The provider's own wait, if it sent one: retry-after-ms first (OpenAI's precise one), then
    Retry-After in seconds (an HTTP date is ignored)."""
    for header, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(header)
        if value is None:
            continue
        try:
            return max(0.0, float(value) * scale)
        except ValueError:
            continue
    return None
