"""The model (chat.ports.ChatModel): the openai SDK pointed at OpenAI or any compatible server,
with one retry layer (tenacity; the SDK's own retries are off so attempts do not multiply)."""

from __future__ import annotations

from typing import Any

import openai
from openai.types.chat import ChatCompletion
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from chat.errors import ModelRejected, ModelUnavailable
from chat.logging import get_logger
from chat.ports import ModelReply

logger = get_logger(__name__)
TRANSIENT = (openai.APITimeoutError, openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError)


def is_retryable(error: BaseException) -> bool:
    """429s (except an exhausted quota), 5xx, timeouts and connection errors; never other 4xx."""
    if isinstance(error, openai.RateLimitError):
        return error.code != "insufficient_quota"
    if isinstance(error, openai.APIStatusError):
        return error.status_code >= 500
    return isinstance(error, TRANSIENT)


def retry_after_seconds(error: BaseException | None) -> float | None:
    """The server's own Retry-After (retry-after-ms first, as the SDK does), if it sent one."""
    response = getattr(error, "response", None)
    if response is None:
        return None
    for header, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = response.headers.get(header)
        try:
            return max(0.0, float(value) * scale) if value is not None else None
        except ValueError:
            continue
    return None


def openai_client(api_key: str, base_url: str | None, timeout_seconds: float) -> openai.OpenAI:
    """The SDK's client with its own retries off: OpenAIChatModel's retry layer is the only one."""
    return openai.OpenAI(api_key=api_key, base_url=base_url, timeout=timeout_seconds, max_retries=0)


class OpenAIChatModel:
    def __init__(
        self,
        client: openai.OpenAI,
        *,
        max_attempts: int,
        retry_initial_seconds: float,
        retry_max_seconds: float,
        reply_max_tokens: int = 1024,
    ) -> None:
        self.client = client
        self.max_attempts = max_attempts
        self.retry_max_seconds = retry_max_seconds
        self.reply_max_tokens = reply_max_tokens
        self._backoff = wait_exponential_jitter(
            multiplier=retry_initial_seconds, jitter=retry_initial_seconds, max=retry_max_seconds
        )

    def complete(self, messages: list[dict[str, str]], model: str) -> ModelReply:
        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=self._wait,
            retry=retry_if_exception(is_retryable),
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            completion = retrying(self._create, messages, model)
        except openai.RateLimitError as error:
            if error.code == "insufficient_quota":
                raise ModelRejected(
                    "The AI provider's quota for this service is used up; the service's owner needs to add credit.",
                    str(error),
                ) from error
            raise ModelUnavailable("The AI model is busy (rate limited). Please send your message again.") from error
        except (openai.APITimeoutError, openai.APIConnectionError) as error:
            raise ModelUnavailable("The AI model did not answer in time. Please send your message again.") from error
        except openai.APIStatusError as error:
            if error.status_code >= 500:
                raise ModelUnavailable(
                    "The AI model had a server error. Please send your message again.", str(error)
                ) from error
            raise ModelRejected(
                f"The AI model rejected this conversation ({error.status_code}): {_provider_message(error)}",
                str(error),
            ) from error
        choice = completion.choices[0] if completion.choices else None
        content = choice.message.content if choice and choice.message else None
        if not content:
            raise ModelUnavailable("The AI model returned an empty reply. Please send your message again.")
        usage = completion.usage
        return ModelReply(
            content=content,
            model=completion.model or model,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
        )

    def _create(self, messages: list[dict[str, str]], model: str) -> ChatCompletion:
        """POST /chat/completions through the SDK's client (auth, timeout, errors, typed result)
        but without `chat.completions.create`'s parameter transform: it walks every message
        through the TypedDict machinery and cost ~0.1 ms per message (13 ms for a 100-message
        context) to produce the same plain JSON we already have."""
        # max_tokens always: without it the provider's own maximum is what a reply may cost.
        body: dict[str, Any] = {"model": model, "messages": messages, "max_tokens": self.reply_max_tokens}
        return self.client.post("/chat/completions", body=body, cast_to=ChatCompletion)

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        server_says = retry_after_seconds(error)
        if server_says is not None:
            return min(server_says, self.retry_max_seconds)
        return float(self._backoff(state))

    @staticmethod
    def _log_retry(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        logger.warning(
            "model call failed, retrying",
            attempt=state.attempt_number,
            error_type=type(error).__name__,
            wait_seconds=round(state.upcoming_sleep, 3),
        )


def _provider_message(error: openai.APIStatusError) -> str:
    body = error.body
    if isinstance(body, dict):
        message = body.get("message") or (body.get("error") or {}).get("message")
        if message:
            return str(message)[:300]
    return error.message[:300]
