"""The model (chat.ports.ChatModel and StreamingChatModel): the openai SDK pointed at OpenAI or
any compatible server, with one retry layer (tenacity; the SDK's own retries are off so attempts
do not multiply). A streamed reply is retried only until its first piece of text."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import openai
from openai import Stream
from openai.types.chat import ChatCompletion
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from chat.errors import ModelRejected, ModelUnavailable
from chat.logging import get_logger
from chat.ports import ModelReply, ModelStream

logger = get_logger(__name__)
TRANSIENT = (openai.APITimeoutError, openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError)


def is_retryable(error: BaseException) -> bool:
    """429s (except an exhausted quota), 5xx, timeouts, connection errors and a stream's error
    event; never other 4xx."""
    if isinstance(error, openai.RateLimitError):
        return error.code != "insufficient_quota"
    if isinstance(error, openai.APIStatusError):
        return error.status_code >= 500
    return isinstance(error, TRANSIENT) or type(error) is openai.APIError


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
        retrying = self._retrying()
        with provider_errors():
            completion = retrying(self._create, messages, model)
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

    def stream(self, messages: list[dict[str, str]], model: str) -> ModelStream:
        """Open a streamed reply and read it up to its first piece of text, retrying as
        `complete` does until then (nothing has been shown to anyone yet). Errors after the first
        piece are the caller's: see OpenAIModelStream."""
        with provider_errors():
            return self._retrying()(self._open_stream, messages, model)

    def _open_stream(self, messages: list[dict[str, str]], model: str) -> OpenAIModelStream:
        body: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self.reply_max_tokens:
            body["max_tokens"] = self.reply_max_tokens
        # The SDK sends the request (auth, timeout, status errors raised here, as for `complete`);
        # its body is then read by _lean_chunks, not by the SDK's typed chunks: building a
        # pydantic ChatCompletionChunk per chunk made a 500-token stream cost 3.7x the client CPU
        # of plain dicts, and the SDK's line-by-line SSE decoder most of the rest
        # (bench/streaming.py measures all three).
        raw: Stream[object] = self.client.post(
            "/chat/completions", body=body, cast_to=object, stream=True, stream_cls=Stream[object]
        )
        opened = OpenAIModelStream(raw, model)
        try:
            opened.read_first_piece()
        except BaseException:
            opened.close()
            raise
        return opened

    def _retrying(self) -> Retrying:
        return Retrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=self._wait,
            retry=retry_if_exception(is_retryable),
            before_sleep=self._log_retry,
            reraise=True,
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


class OpenAIModelStream:
    """One streamed reply (chat.ports.ModelStream): iterate for the pieces of text, the first one
    already read; `reply` afterwards holds the whole text and the usage the provider reported in
    its last chunk. `close` may be called from another thread (a stop): it closes the provider's
    connection, so generation and billing end there, and the reading thread ends quietly."""

    def __init__(self, raw: Stream[object], model: str) -> None:
        self._raw = raw
        self._chunks = _lean_chunks(raw)
        self._model = model
        self._pieces: list[str] = []
        self._first: str | None = None
        self._usage: dict[str, Any] | None = None
        self._model_unread = True
        self.closed = False

    def read_first_piece(self) -> None:
        for chunk in self._chunks:
            piece = self._absorb(chunk)
            if piece:
                self._first = piece
                return
        raise ModelUnavailable("The AI model returned an empty reply. Please send your message again.")

    def __iter__(self) -> Iterator[str]:
        if self._first is not None:
            first, self._first = self._first, None
            yield first
        with provider_errors():
            try:
                for chunk in self._chunks:
                    piece = self._absorb(chunk)
                    if piece:
                        yield piece
            except Exception:
                if self.closed:
                    return  # closed by a stop while reading: not an error
                raise

    def close(self) -> None:
        self.closed = True
        self._raw.close()

    @property
    def reply(self) -> ModelReply:
        usage = self._usage or {}
        return ModelReply(
            content="".join(self._pieces),
            model=self._model,
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
        )

    def _absorb(self, chunk: dict[str, Any]) -> str | None:
        """The chunk's text, if any; keeps the model's name and the usage on the way. Plain dict
        reads: the chunk is the JSON the provider sent."""
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        if self._model_unread and chunk.get("model"):
            self._model = chunk["model"]
            self._model_unread = False
        choices = chunk.get("choices") or ()
        piece = (choices[0].get("delta") or {}).get("content") if choices else None
        if piece:
            self._pieces.append(piece)
            return str(piece)
        return None


def _lean_chunks(raw: Stream[object]) -> Iterator[dict[str, Any]]:
    """The stream's JSON chunks, split on blank lines with bytes operations and parsed with
    json.loads: OpenAI-compatible servers send one `data:` line per event. An `error` event
    raises APIError as the SDK does; transport failures become the SDK's connection/timeout
    errors, so `provider_errors` words them the same."""
    response = raw.response
    buffer = b""
    try:
        for received in response.iter_bytes():
            buffer += received.replace(b"\r\n", b"\n") if b"\r" in received else received
            *events, buffer = buffer.split(b"\n\n")
            for event in events:
                for line in event.split(b"\n"):
                    if not line.startswith(b"data:"):
                        continue
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        return
                    chunk = json.loads(data)
                    if isinstance(chunk, dict) and chunk.get("error"):
                        error = chunk["error"]
                        message = error.get("message") if isinstance(error, dict) else None
                        raise openai.APIError(str(message or "An error occurred during streaming"), response.request, body=error)
                    yield chunk
    except openai.APIError:
        raise
    except Exception as error:
        if "Timeout" in type(error).__name__:
            raise openai.APITimeoutError(request=response.request) from error
        raise openai.APIConnectionError(request=response.request) from error
    finally:
        response.close()


@contextmanager
def provider_errors() -> Iterator[None]:
    """The SDK's errors as the domain's: ModelUnavailable (retrying later may help) or
    ModelRejected (it cannot), each with a message the user may read."""
    try:
        yield
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
            raise ModelUnavailable("The AI model had a server error. Please send your message again.", str(error)) from error
        raise ModelRejected(
            f"The AI model rejected this conversation ({error.status_code}): {_provider_message(error)}",
            str(error),
        ) from error
    except openai.APIError as error:
        # An error event inside a stream: the provider broke off (overloaded, or a server error).
        raise ModelUnavailable("The AI model's reply broke off. Please send your message again.", str(error)) from error


def _provider_message(error: openai.APIStatusError) -> str:
    body = error.body
    if isinstance(body, dict):
        message = body.get("message") or (body.get("error") or {}).get("message")
        if message:
            return str(message)[:300]
    return error.message[:300]
