"""The one translation of the model provider's answers into the domain's errors: for each status
and OpenAI error code, whether it is retried and the exact message the user reads."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from adapters.model_errors import (
    BROKE_OFF,
    model_error,
    retry_after_seconds,
    status_failure,
    stream_error_failure,
    transport_failure,
)
from chat.errors import ModelError, ModelRejected, ModelUnavailable

BUSY = "The AI model is busy (rate limited). Please send your message again."
SERVER_ERROR = "The AI model had a server error. Please send your message again."
TIMED_OUT = "The AI model did not answer in time. Please send your message again."
BROKE_OFF_MESSAGE = "The AI model's reply broke off. Please send your message again."
QUOTA = "The AI provider's quota for this service is used up; the service's owner needs to add credit."


def openai_error(message: str | None, error_type: str, code: str | None = None) -> bytes:
    return json.dumps({"error": {"message": message, "type": error_type, "param": None, "code": code}}).encode()


@pytest.mark.parametrize(
    ("status", "body", "retried", "named", "user_message"),
    [
        pytest.param(429, openai_error("Rate limit reached", "requests", "rate_limit_exceeded"),
                     True, ModelUnavailable, BUSY, id="429 rate limit"),
        pytest.param(429, openai_error("You exceeded your current quota", "insufficient_quota", "insufficient_quota"),
                     False, ModelRejected, QUOTA, id="429 insufficient_quota"),
        pytest.param(429, openai_error("quota", "insufficient_quota"),
                     False, ModelRejected, QUOTA, id="429 insufficient_quota as the type only"),
        pytest.param(500, openai_error("The server had an error", "server_error"),
                     True, ModelUnavailable, SERVER_ERROR, id="500"),
        pytest.param(502, b"<html>Bad gateway</html>", True, ModelUnavailable, SERVER_ERROR, id="502 from a proxy"),
        pytest.param(503, openai_error("overloaded", "server_error"), True, ModelUnavailable, SERVER_ERROR, id="503"),
        pytest.param(400, openai_error("This model's maximum context length is 128000 tokens.", "invalid_request_error"),
                     False, ModelRejected,
                     "The AI model rejected this conversation (400): This model's maximum context length is 128000 tokens.",
                     id="400 says what is wrong"),
        pytest.param(401, openai_error("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
                     False, ModelRejected, "The AI model rejected this conversation (401): Incorrect API key provided.",
                     id="401"),
        pytest.param(404, openai_error("The model `gpt-9` does not exist.", "invalid_request_error", "model_not_found"),
                     False, ModelRejected, "The AI model rejected this conversation (404): The model `gpt-9` does not exist.",
                     id="404 unknown model"),
        pytest.param(400, b'{"message": "bad field"}', False, ModelRejected,
                     "The AI model rejected this conversation (400): bad field", id="400 with a bare message"),
        pytest.param(400, b'{"error": "bad field"}', False, ModelRejected,
                     "The AI model rejected this conversation (400): bad field", id="400 with a string error"),
        pytest.param(422, b"unprocessable", False, ModelRejected,
                     "The AI model rejected this conversation (422): unprocessable", id="422 with a text body"),
        pytest.param(400, b"", False, ModelRejected,
                     "The AI model rejected this conversation (400): Error code: 400", id="400 with no body"),
        pytest.param(302, b"", False, ModelRejected,
                     "The AI model rejected this conversation (302): Error code: 302", id="302 unfollowed"),
    ],
)
def test_each_status_has_one_meaning(
    status: int, body: bytes, retried: bool, named: type[ModelError], user_message: str
) -> None:
    failure = status_failure(status, body, {})
    error = model_error(failure)

    assert failure.retried is retried
    assert type(error) is named
    assert error.user_message == user_message


def test_the_providers_message_is_cut_to_300_characters() -> None:
    error = model_error(status_failure(400, openai_error("x" * 1000, "invalid_request_error"), {}))

    assert error.user_message == "The AI model rejected this conversation (400): " + "x" * 300


@pytest.mark.parametrize(
    "raised",
    [
        pytest.param(asyncio.TimeoutError(), id="total timeout"),
        pytest.param(aiohttp.SocketTimeoutError("Timeout on reading data from socket"), id="read timeout"),
        pytest.param(aiohttp.ConnectionTimeoutError("Connection timeout"), id="connect timeout"),
        pytest.param(aiohttp.ServerDisconnectedError(), id="server disconnected"),
        pytest.param(aiohttp.ClientPayloadError("Response payload is not completed"), id="body cut short"),
        pytest.param(aiohttp.ClientOSError(111, "Connection refused"), id="connection refused"),
        pytest.param(json.JSONDecodeError("Expecting value", "<html>", 0), id="a body that is not JSON"),
    ],
)
def test_no_answer_is_retried_and_reads_as_not_answering_in_time(raised: BaseException) -> None:
    failure = transport_failure(raised)
    error = model_error(failure)

    assert failure.retried
    assert type(error) is ModelUnavailable
    assert error.user_message == TIMED_OUT


def test_a_streams_error_event_is_retried_and_reads_as_broken_off() -> None:
    failure = stream_error_failure({"message": "The server had an error while processing your request.", "type": "server_error"})
    error = model_error(failure)

    assert (failure.status, failure.retried) == (BROKE_OFF, True)
    assert type(error) is ModelUnavailable
    assert error.user_message == BROKE_OFF_MESSAGE
    assert "The server had an error" in str(error)  # the provider's words stay in the logs


def test_the_domain_error_keeps_the_providers_words_for_the_logs() -> None:
    error = model_error(status_failure(500, openai_error("upstream overloaded", "server_error"), {}))

    assert str(error) == "500 server_error: upstream overloaded"


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        pytest.param({"retry-after-ms": "1500", "retry-after": "9"}, 1.5, id="retry-after-ms first"),
        pytest.param({"retry-after": "2"}, 2.0, id="Retry-After in seconds"),
        pytest.param({"retry-after": "0.25"}, 0.25, id="fractional seconds"),
        pytest.param({"retry-after-ms": "soon", "retry-after": "3"}, 3.0, id="an unreadable ms falls back"),
        pytest.param({"retry-after": "Wed, 21 Oct 2026 07:28:00 GMT"}, None, id="an HTTP date is ignored"),
        pytest.param({"retry-after": "-5"}, 0.0, id="never negative"),
        pytest.param({}, None, id="none sent"),
    ],
)
def test_retry_after(headers: dict[str, str], seconds: float | None) -> None:
    assert retry_after_seconds(headers) == seconds
    assert status_failure(429, b"", headers).retry_after == seconds
