"""The model (chat.ports.ChatModel and StreamingChatModel): OpenAI's HTTP API, or any compatible
server's, spoken directly with aiohttp on the reply engine's loop (`POST {base_url}/chat/completions`),
with one retry layer (tenacity). A streamed reply is retried only until its first piece of text.

Why not the openai SDK: a reply is awaited on the one event loop each process runs, and a streamed
reply is one chunk per token. aiohttp parses HTTP in C; reading a paced 500-token stream cost ~26 us
of CPU per chunk this way against ~85 us through the SDK's async client and its streaming wrappers.
The request is plain JSON we already hold, so the SDK's request building bought nothing either."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from adapters.http_session import LoopSession
from adapters.model_errors import (
    EMPTY_REPLY,
    TRANSPORT_ERRORS,
    ProviderFailure,
    model_error,
    status_failure,
    transport_failure,
)
from adapters.model_stream import OpenAIModelStream, ReadTicks
from chat.errors import ModelUnavailable
from chat.logging import get_logger
from chat.metrics import NO_METRICS, ServiceMetrics
from chat.ports import ModelReply

logger = get_logger(__name__)
T = TypeVar("T")
OPENAI_BASE_URL = "https://api.openai.com/v1"
PING_TIMEOUT = aiohttp.ClientTimeout(total=3.0)


class OpenAIChatModel:
    def __init__(
        self,
        api_key: str,
        base_url: str | None,
        timeout_seconds: float,
        session: LoopSession,
        *,
        max_attempts: int,
        retry_initial_seconds: float,
        retry_max_seconds: float,
        reply_max_tokens: int = 1024,
        stream_read_interval_seconds: float = 0.0,
        metrics: ServiceMetrics = NO_METRICS,
    ) -> None:
        self.url = f"{(base_url or OPENAI_BASE_URL).rstrip('/')}/chat/completions"
        self.models_url = f"{(base_url or OPENAI_BASE_URL).rstrip('/')}/models"
        self.headers = {"Authorization": f"Bearer {api_key}"}
        self.session = session
        # A whole reply must come within the timeout; a stream only has to keep sending: each
        # read may wait that long, so a long reply is fine while its tokens keep coming.
        self.whole_timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self.stream_timeout = aiohttp.ClientTimeout(total=None, connect=timeout_seconds, sock_read=timeout_seconds)
        self.read_ticks = ReadTicks(stream_read_interval_seconds)  # shared by every stream of the process
        self.max_attempts = max_attempts
        self.retry_max_seconds = retry_max_seconds
        self.reply_max_tokens = reply_max_tokens
        self.metrics = metrics
        self._backoff = wait_exponential_jitter(
            multiplier=retry_initial_seconds, jitter=retry_initial_seconds, max=retry_max_seconds
        )

    async def complete(self, messages: list[dict[str, str]], model: str, max_tokens: int | None = None) -> ModelReply:
        completion = await self._retried(lambda: self._create(messages, model, max_tokens or self.reply_max_tokens))
        return completion_reply(completion, model)

    async def stream(self, messages: list[dict[str, str]], model: str) -> OpenAIModelStream:
        """Open a streamed reply and read it up to its first piece of text, retrying as
        `complete` does until then (nothing has been shown to anyone yet). Errors after the first
        piece are the caller's: see OpenAIModelStream."""
        return await self._retried(lambda: self._open_stream(messages, model))

    async def ping(self) -> None:
        """Readiness: list the models (free, and needs a valid key), without retries."""
        try:
            async with self.session.get().get(self.models_url, headers=self.headers, timeout=PING_TIMEOUT) as response:
                status = response.status
                await response.read()
        except TRANSPORT_ERRORS as error:
            raise ModelUnavailable(f"the model's API is unreachable: {type(error).__name__}") from error
        if status >= 300:
            raise ModelUnavailable(f"the model's API answered {status}")

    async def _create(self, messages: list[dict[str, str]], model: str, max_tokens: int) -> dict[str, Any]:
        # max_tokens always: without it the provider's own maximum is what a reply may cost.
        body = {"model": model, "messages": messages, "max_tokens": max_tokens}
        response = await self._post(body, self.whole_timeout)
        try:
            completion = json.loads(await response.read())
        except TRANSPORT_ERRORS as error:
            raise transport_failure(error) from error
        finally:
            response.release()
        return completion if isinstance(completion, dict) else {}

    async def _open_stream(self, messages: list[dict[str, str]], model: str) -> OpenAIModelStream:
        body = {
            "model": model,
            "messages": messages,
            "max_tokens": self.reply_max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        opened = OpenAIModelStream(await self._post(body, self.stream_timeout), model, self.read_ticks)
        try:
            await opened.read_first_piece()
        except BaseException:
            opened.close()
            raise
        return opened

    async def _post(self, body: dict[str, Any], timeout: aiohttp.ClientTimeout) -> aiohttp.ClientResponse:
        """The response once its status is a success; any other status is a ProviderFailure."""
        try:
            response = await self.session.get().post(self.url, json=body, headers=self.headers, timeout=timeout)
        except TRANSPORT_ERRORS as error:
            raise transport_failure(error) from error
        if 200 <= response.status < 300:
            return response
        try:
            error_body = await response.read()
        except TRANSPORT_ERRORS:
            error_body = b""
        finally:
            response.release()
        raise status_failure(response.status, error_body, response.headers)

    async def _retried(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """`attempt` under the retry rule (ProviderFailure.retried); the last failure as the
        domain's error once attempts run out or retrying cannot help."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=self._wait,
            retry=retry_if_exception(lambda error: isinstance(error, ProviderFailure) and error.retried),
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            async for trying in retrying:
                with trying:
                    return await self._counted(attempt)
        except ProviderFailure as failure:
            raise model_error(failure) from failure
        raise AssertionError("unreachable: tenacity returns or raises")

    async def _counted(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """One request to the model, counted by its outcome."""
        try:
            result = await attempt()
        except ProviderFailure as failure:
            self.metrics.model_call(failure.meaning.kind)
            raise
        self.metrics.model_call("ok")
        return result

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        server_says = error.retry_after if isinstance(error, ProviderFailure) else None
        if server_says is not None:
            return min(server_says, self.retry_max_seconds)
        return float(self._backoff(state))

    def _log_retry(self, state: RetryCallState) -> None:
        self.metrics.model_retry()
        error = state.outcome.exception() if state.outcome else None
        logger.warning(
            "model call failed, retrying",
            attempt=state.attempt_number,
            failure=str(error)[:200],
            wait_seconds=round(state.upcoming_sleep, 3),
        )


def completion_reply(completion: dict[str, Any], model: str) -> ModelReply:
    """The reply in a whole completion; an empty one is ModelUnavailable (not retried: the model
    did answer, the user may send again)."""
    choices = completion.get("choices") or ()
    message = (choices[0].get("message") or {}) if choices and isinstance(choices[0], dict) else {}
    content = message.get("content")
    if not content:
        raise ModelUnavailable(EMPTY_REPLY)
    usage = completion.get("usage") or {}
    return ModelReply(
        content=str(content),
        model=str(completion.get("model") or model),
        prompt_tokens=usage.get("prompt_tokens"),
        completion_tokens=usage.get("completion_tokens"),
    )
