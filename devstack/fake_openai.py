"""Fake OpenAI-compatible HTTP server for the local dev stack and the test suite.

Why it exists: the chat service must be exercised end to end (real HTTP, the real
``openai`` SDK, retries, timeouts, streaming) without paying for, or depending on,
the real OpenAI API. This server speaks just enough of the Chat Completions
protocol to satisfy the SDK, answers deterministically so tests can assert exact
text, and lets tests inject latency and failures over a small control API.

Public surface:

* ``create_app(state)`` - the Starlette application.
* ``FakeModelState`` - latency, fault queue and request log shared by the handlers.
* ``Fault`` - one queued failure.
* CLI: ``python -m devstack.fake_openai --host 127.0.0.1 --port 54330 --latency-ms 0``.

HTTP endpoints:

* ``POST /v1/chat/completions`` - JSON or SSE streaming completion. The reply is
  always ``"Echo: " + <text of the last user message>``.
* ``GET /v1/models`` and ``GET /v1/models/{model}``.
* ``POST /_fake/faults``, ``GET /_fake/faults`` - queue / inspect injected faults.
* ``POST /_fake/config``, ``GET /_fake/config`` - set / read the latency.
* ``GET /_fake/requests[?match=substring]`` - every completion request received.
* ``POST /_fake/reset`` - drop faults and recorded requests, restore default latency.

Token usage is a deliberately crude, deterministic estimate so tests can predict it:
every message costs ``len(text) // 4 + 1`` prompt tokens, and the reply costs
``len(reply) // 4 + 1`` completion tokens.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, cast

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

FAKE_MODEL_ID = "fake-model"
LATENCY_ENV_VAR = "FAKE_OPENAI_LATENCY_MS"
DEFAULT_RETRY_AFTER_S = 1.0
DEFAULT_HANG_S = 30.0
REPLY_PREFIX = "Echo: "

FaultKind = Literal["rate_limit", "server_error", "hang", "insufficient_quota", "bad_request"]
FAULT_KINDS: tuple[FaultKind, ...] = (
    "rate_limit",
    "server_error",
    "hang",
    "insufficient_quota",
    "bad_request",
)

JsonDict = dict[str, Any]


# --------------------------------------------------------------------------- errors


class ApiError(Exception):
    """An OpenAI-shaped error response, raised so validation code can bail out early.

    Why: every failure path (validation, auth, injected faults, control API misuse)
    must produce the exact ``{"error": {...}}`` body the SDK parses into typed
    exceptions; centralising it here keeps the shape identical everywhere.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        outcome: str = "invalid_request",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.param = param
        self.code = code
        self.outcome = outcome
        self.headers = dict(headers or {})

    def body(self) -> JsonDict:
        """Return the JSON body OpenAI uses for errors (the SDK reads ``error.*``)."""
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }

    def to_response(self) -> JSONResponse:
        """Render the error as an HTTP response with its status and extra headers."""
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


# --------------------------------------------------------------------------- state


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

    def to_json(self) -> JsonDict:
        """Return the public JSON form (the matching helper field stays private)."""
        return {
            "model": self.model,
            "messages": self.messages,
            "stream": self.stream,
            "received_at": self.received_at,
            "outcome": self.outcome,
        }


class FakeModelState:
    """Mutable state of one fake server: latency, queued faults, request log, ids.

    Why a class: tests reset it between cases over HTTP, and in-process users can
    also poke it directly. A lock makes those direct calls from another thread
    safe; handlers never await while holding it, so the event loop never blocks.
    """

    def __init__(self, default_latency_ms: float = 0.0) -> None:
        self.default_latency_ms = _validate_latency(default_latency_ms)
        self._lock = threading.Lock()
        self._latency_ms = self.default_latency_ms
        self._faults: list[Fault] = []
        self._requests: list[RecordedRequest] = []
        self._ids = itertools.count(1)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> FakeModelState:
        """Build state whose default latency comes from ``FAKE_OPENAI_LATENCY_MS``."""
        return cls(default_latency_ms=latency_ms_from_env(environ))

    @property
    def latency_ms(self) -> float:
        """Current simulated latency applied before every completion response."""
        return self._latency_ms

    def set_latency_ms(self, latency_ms: float) -> None:
        """Change the latency at runtime (what ``POST /_fake/config`` calls)."""
        self._latency_ms = _validate_latency(latency_ms)

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
        self, *, model: Any, messages: Any, stream: bool, outcome: str, user_text: str
    ) -> RecordedRequest:
        """Append a request to the log at arrival time (before any simulated delay)."""
        entry = RecordedRequest(model, messages, stream, time.time(), outcome, user_text)
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
            self._ids = itertools.count(1)


def latency_ms_from_env(environ: Mapping[str, str] | None = None) -> float:
    """Read the default latency from ``FAKE_OPENAI_LATENCY_MS`` (0 when unset)."""
    env = os.environ if environ is None else environ
    raw = env.get(LATENCY_ENV_VAR, "").strip()
    if not raw:
        return 0.0
    try:
        return _validate_latency(float(raw))
    except ValueError as exc:
        raise ValueError(f"{LATENCY_ENV_VAR} must be a non-negative number, got {raw!r}") from exc


def _validate_latency(latency_ms: float) -> float:
    """Reject negative/NaN latency early, where the mistake is made."""
    if not _is_non_negative_number(latency_ms):
        raise ValueError(f"latency_ms must be a non-negative number, got {latency_ms!r}")
    return float(latency_ms)


def _is_non_negative_number(value: object) -> bool:
    """True for finite ints/floats >= 0 (bools excluded: ``True`` is not a duration)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value) and value >= 0


# --------------------------------------------------------------------------- request parsing


@dataclass(frozen=True)
class ChatRequest:
    """The validated subset of a Chat Completions request body the fake cares about."""

    model: str
    messages: list[JsonDict]
    stream: bool
    include_usage: bool

    @property
    def last_user_text(self) -> str:
        """Text of the last ``user`` message; it drives the reply and fault matching."""
        return last_user_text(self.messages)


def content_text(content: object) -> str:
    """Flatten message content (string or list of ``{"type": "text"}`` parts) to text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)]
        return "\n".join(texts)
    return ""


def last_user_text(messages: object) -> str:
    """Return the text of the last message whose role is ``user`` ("" if none)."""
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


def parse_chat_request(body: object) -> ChatRequest:
    """Validate a request body like OpenAI does, raising 400 ``ApiError`` on problems."""
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.", code="invalid_type")
    model = _parse_model(body)
    messages = _parse_messages(body)
    stream = _optional_bool(body, "stream")
    include_usage = _parse_include_usage(body)
    return ChatRequest(model=model, messages=messages, stream=stream, include_usage=include_usage)


def _parse_model(body: JsonDict) -> str:
    """``model`` must be a non-empty string; any name is accepted and echoed back."""
    if "model" not in body:
        raise ApiError(400, "Missing required parameter: 'model'.", param="model", code="missing_required_parameter")
    model = body["model"]
    if not isinstance(model, str) or not model:
        raise ApiError(400, "'model' must be a non-empty string.", param="model", code="invalid_type")
    return model


def _parse_messages(body: JsonDict) -> list[JsonDict]:
    """``messages`` must be a non-empty list of objects with a string role."""
    if "messages" not in body:
        raise ApiError(
            400, "Missing required parameter: 'messages'.", param="messages", code="missing_required_parameter"
        )
    messages = body["messages"]
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "'messages' must be a non-empty array.", param="messages", code="invalid_type")
    for index, message in enumerate(messages):
        _check_message(index, message)
    return cast(list[JsonDict], messages)


def _check_message(index: int, message: object) -> None:
    """Reject one malformed message, naming it the way OpenAI does (``messages.[i]``)."""
    param = f"messages.[{index}]"
    if not isinstance(message, dict):
        raise ApiError(400, f"Invalid type for '{param}': expected an object.", param=param, code="invalid_type")
    if not isinstance(message.get("role"), str):
        raise ApiError(400, f"Missing or invalid '{param}.role'.", param=f"{param}.role", code="invalid_type")
    content = message.get("content")
    if content is not None and not isinstance(content, (str, list)):
        raise ApiError(400, f"Invalid type for '{param}.content'.", param=f"{param}.content", code="invalid_type")


def _optional_bool(body: JsonDict, key: str) -> bool:
    """Read an optional boolean flag; ``null`` counts as false."""
    value = body.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ApiError(400, f"Invalid type for '{key}': expected a boolean.", param=key, code="invalid_type")
    return value


def _parse_include_usage(body: JsonDict) -> bool:
    """Read ``stream_options.include_usage`` (ask for a final usage chunk)."""
    options = body.get("stream_options")
    if options is None:
        return False
    if not isinstance(options, dict):
        raise ApiError(
            400, "Invalid type for 'stream_options': expected an object.", param="stream_options", code="invalid_type"
        )
    return _optional_bool(options, "include_usage")


def _has_bearer_token(request: Request) -> bool:
    """Any non-empty bearer token is accepted: we check presence, not validity."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and bool(token.strip())


def _unauthorized() -> ApiError:
    """The 401 OpenAI returns when no API key is sent (SDK -> AuthenticationError)."""
    return ApiError(
        401,
        "You didn't provide an API key. You need to provide your API key in an Authorization "
        "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        code="invalid_api_key",
        outcome="unauthorized",
    )


async def _read_json(request: Request) -> object:
    """Parse the body, mapping malformed JSON to OpenAI's 400."""
    try:
        return await request.json()
    except ValueError as exc:
        raise ApiError(400, "We could not parse the JSON body of your request.", code="invalid_json") from exc


# --------------------------------------------------------------------------- replies


def estimate_tokens(text: str) -> int:
    """Deterministic token estimate: ``len(text) // 4 + 1`` (roughly 4 chars/token)."""
    return len(text) // 4 + 1


def reply_text(chat: ChatRequest) -> str:
    """The deterministic answer: ``"Echo: "`` plus the last user message's text."""
    return REPLY_PREFIX + chat.last_user_text


def usage_for(chat: ChatRequest, reply: str) -> JsonDict:
    """Usage block: one estimate per prompt message plus one for the reply."""
    prompt = sum(estimate_tokens(content_text(m.get("content"))) for m in chat.messages)
    completion = estimate_tokens(reply)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def completion_body(chat: ChatRequest, completion_id: str, created: int) -> JsonDict:
    """A full non-streaming ``chat.completion`` object."""
    reply = reply_text(chat)
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": chat.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": usage_for(chat, reply),
        "system_fingerprint": None,
    }


def split_for_stream(text: str) -> list[str]:
    """Split text into word-sized pieces whose concatenation is exactly ``text``."""
    return [piece for piece in re.split(r"(?<=\s)(?=\S)", text) if piece]


def stream_chunks(chat: ChatRequest, completion_id: str, created: int) -> list[JsonDict]:
    """All ``chat.completion.chunk`` objects for a streamed reply, in order.

    Shape follows OpenAI: a role chunk, content deltas, a finish chunk, then (only
    with ``include_usage``) a usage chunk with empty ``choices``; when usage is
    requested every other chunk carries ``"usage": null``.
    """
    reply = reply_text(chat)
    deltas: list[tuple[JsonDict, str | None]] = [({"role": "assistant", "content": ""}, None)]
    deltas += [({"content": piece}, None) for piece in split_for_stream(reply)]
    deltas.append(({}, "stop"))
    base = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": chat.model}
    chunks = [_chunk(base, delta, finish, chat.include_usage) for delta, finish in deltas]
    if chat.include_usage:
        chunks.append({**base, "choices": [], "usage": usage_for(chat, reply)})
    return chunks


def _chunk(base: JsonDict, delta: JsonDict, finish_reason: str | None, include_usage: bool) -> JsonDict:
    """One streaming chunk with a single choice."""
    chunk: JsonDict = {
        **base,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }
    if include_usage:
        chunk["usage"] = None
    return chunk


def sse_frames(chunks: Sequence[JsonDict]) -> list[str]:
    """Encode chunks as Server-Sent Events, terminated by ``data: [DONE]``."""
    frames = [f"data: {json.dumps(chunk, separators=(',', ':'))}\n\n" for chunk in chunks]
    frames.append("data: [DONE]\n\n")
    return frames


async def _iterate(frames: Sequence[str]) -> AsyncIterator[str]:
    """Async iterator so Starlette streams on the event loop, not in a thread pool."""
    for frame in frames:
        yield frame


def fault_error(fault: Fault, model: str) -> ApiError:
    """The error response an injected fault produces (``hang`` never gets here)."""
    if fault.kind == "rate_limit":
        return _rate_limit_error(fault.retry_after, model)
    if fault.kind == "server_error":
        return ApiError(
            500,
            "The server had an error while processing your request. Sorry about that!",
            error_type="server_error",
            outcome="server_error",
        )
    if fault.kind == "insufficient_quota":
        return ApiError(
            429,
            "You exceeded your current quota, please check your plan and billing details.",
            error_type="insufficient_quota",
            code="insufficient_quota",
            outcome="insufficient_quota",
        )
    return ApiError(400, "Injected bad request (fake OpenAI fault).", outcome="bad_request")


def _rate_limit_error(retry_after: float, model: str) -> ApiError:
    """429 with both ``Retry-After`` (seconds) and ``retry-after-ms``, like OpenAI."""
    seconds = _format_seconds(retry_after)
    return ApiError(
        429,
        f"Rate limit reached for {model}. Please try again in {seconds}s.",
        error_type="rate_limit_exceeded",
        code="rate_limit_exceeded",
        outcome="rate_limit",
        headers={"retry-after": seconds, "retry-after-ms": str(round(retry_after * 1000))},
    )


def _format_seconds(seconds: float) -> str:
    """Render ``1.0`` as ``"1"`` and ``0.1`` as ``"0.1"`` (what clients parse best)."""
    return str(int(seconds)) if float(seconds).is_integer() else repr(float(seconds))


# --------------------------------------------------------------------------- waiting


async def sleep_unless_disconnected(request: Request, seconds: float) -> bool:
    """Sleep up to ``seconds``; return False early if the client hangs up.

    Why: a client that timed out (``hang`` fault) should not pin a server task for
    30 s, and a fast shutdown must not wait for sleepers nobody listens to.
    """
    if seconds <= 0:
        return True
    watcher = asyncio.ensure_future(_wait_for_disconnect(request))
    try:
        done, _ = await asyncio.wait({watcher}, timeout=seconds)
    finally:
        watcher.cancel()
    return not done


async def _wait_for_disconnect(request: Request) -> None:
    """Block until the ASGI server reports ``http.disconnect`` (body already read)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


# --------------------------------------------------------------------------- control API parsing


def parse_faults(body: object) -> list[Fault]:
    """Parse ``{"faults": [...], "match": "..."}``; a per-fault ``match`` wins."""
    if not isinstance(body, dict):
        raise ApiError(400, "Body must be a JSON object.", param=None)
    raw_faults = body.get("faults")
    if not isinstance(raw_faults, list) or not raw_faults:
        raise ApiError(400, "'faults' must be a non-empty array.", param="faults")
    default_match = _optional_str(body, "match", None)
    return [parse_fault(item, default_match) for item in raw_faults]


def parse_fault(item: object, default_match: str | None) -> Fault:
    """Parse one fault description, validating its kind and numeric knobs."""
    if not isinstance(item, dict) or item.get("kind") not in FAULT_KINDS:
        raise ApiError(400, f"Each fault needs a 'kind' among {list(FAULT_KINDS)}.", param="faults.kind")
    return Fault(
        kind=cast(FaultKind, item["kind"]),
        match=_optional_str(item, "match", default_match),
        retry_after=_non_negative(item, "retry_after", DEFAULT_RETRY_AFTER_S),
        seconds=_non_negative(item, "seconds", DEFAULT_HANG_S),
    )


def _optional_str(body: JsonDict, key: str, default: str | None) -> str | None:
    """Optional string field with a default; anything else is a 400."""
    value = body.get(key, default)
    if value is not None and not isinstance(value, str):
        raise ApiError(400, f"'{key}' must be a string.", param=key)
    return value


def _non_negative(body: JsonDict, key: str, default: float) -> float:
    """Optional non-negative number field with a default; anything else is a 400."""
    value = body.get(key, default)
    if not _is_non_negative_number(value):
        raise ApiError(400, f"'{key}' must be a non-negative number.", param=key)
    return float(value)


# --------------------------------------------------------------------------- handlers


class _Handlers:
    """Request handlers bound to one ``FakeModelState`` (one state per app)."""

    def __init__(self, state: FakeModelState) -> None:
        self.state = state

    async def chat_completions(self, request: Request) -> Response:
        """Validate, record, apply latency/faults, then answer (JSON or SSE)."""
        try:
            chat = await self._accept(request)
        except ApiError as exc:
            return self._with_request_id(exc.to_response())
        fault = self.state.take_fault(chat.last_user_text)
        self._record(chat, fault.kind if fault else "ok")
        delay = self.state.latency_ms / 1000 + (fault.seconds if fault and fault.kind == "hang" else 0.0)
        await sleep_unless_disconnected(request, delay)
        if fault is not None and fault.kind != "hang":
            return self._with_request_id(fault_error(fault, chat.model).to_response())
        return self._with_request_id(self._answer(chat))

    async def _accept(self, request: Request) -> ChatRequest:
        """Auth + body validation; rejected requests are still recorded."""
        if not _has_bearer_token(request):
            self._record_rejected(None, "unauthorized")
            raise _unauthorized()
        body: object = None
        try:
            body = await _read_json(request)
            return parse_chat_request(body)
        except ApiError as exc:
            self._record_rejected(body, exc.outcome)
            raise

    def _record(self, chat: ChatRequest, outcome: str) -> None:
        """Log an accepted request."""
        self.state.record_request(
            model=chat.model,
            messages=chat.messages,
            stream=chat.stream,
            outcome=outcome,
            user_text=chat.last_user_text,
        )

    def _record_rejected(self, body: object, outcome: str) -> None:
        """Log a rejected request with whatever fields could be read from it."""
        fields = body if isinstance(body, dict) else {}
        self.state.record_request(
            model=fields.get("model"),
            messages=fields.get("messages"),
            stream=fields.get("stream") is True,
            outcome=outcome,
            user_text=last_user_text(fields.get("messages")),
        )

    def _answer(self, chat: ChatRequest) -> Response:
        """Build the successful completion, streamed or not."""
        completion_id = self.state.next_id("chatcmpl")
        created = int(time.time())
        if not chat.stream:
            return JSONResponse(completion_body(chat, completion_id, created))
        frames = sse_frames(stream_chunks(chat, completion_id, created))
        return StreamingResponse(
            _iterate(frames),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache"},
        )

    def _with_request_id(self, response: Response) -> Response:
        """Add ``x-request-id`` (the SDK exposes it as ``request_id`` on errors)."""
        response.headers["x-request-id"] = self.state.next_id("req")
        return response

    async def list_models(self, request: Request) -> Response:
        """``GET /v1/models``: advertise ``fake-model`` (completions accept any name)."""
        if not _has_bearer_token(request):
            return _unauthorized().to_response()
        return JSONResponse({"object": "list", "data": [_model_object(FAKE_MODEL_ID)]})

    async def retrieve_model(self, request: Request) -> Response:
        """``GET /v1/models/{model}``: every model name exists, mirroring completions."""
        if not _has_bearer_token(request):
            return _unauthorized().to_response()
        return JSONResponse(_model_object(request.path_params["model"]))

    async def add_faults(self, request: Request) -> Response:
        """``POST /_fake/faults``: append faults to the FIFO queue."""
        try:
            faults = parse_faults(await _read_json(request))
        except ApiError as exc:
            return exc.to_response()
        return JSONResponse({"queued": self.state.add_faults(faults)})

    async def list_faults(self, request: Request) -> Response:
        """``GET /_fake/faults``: show pending faults (handy when a test misbehaves)."""
        return JSONResponse({"faults": [asdict(fault) for fault in self.state.pending_faults()]})

    async def set_config(self, request: Request) -> Response:
        """``POST /_fake/config``: change latency at runtime."""
        try:
            body = await _read_json(request)
            fields = body if isinstance(body, dict) else {}
            self.state.set_latency_ms(_non_negative(fields, "latency_ms", self.state.latency_ms))
        except ApiError as exc:
            return exc.to_response()
        return await self.get_config(request)

    async def get_config(self, request: Request) -> Response:
        """``GET /_fake/config``: current and default latency."""
        return JSONResponse({"latency_ms": self.state.latency_ms, "default_latency_ms": self.state.default_latency_ms})

    async def list_requests(self, request: Request) -> Response:
        """``GET /_fake/requests[?match=...]``: recorded completion requests in order."""
        entries = self.state.recorded_requests(request.query_params.get("match"))
        return JSONResponse({"requests": [entry.to_json() for entry in entries]})

    async def reset(self, request: Request) -> Response:
        """``POST /_fake/reset``: back to a clean slate between tests."""
        self.state.reset()
        return JSONResponse({"ok": True})


def _model_object(model_id: str) -> JsonDict:
    """An OpenAI ``model`` object."""
    return {"id": model_id, "object": "model", "created": 0, "owned_by": "devstack"}


async def _http_error(request: Request, exc: Exception) -> Response:
    """Render Starlette's 404/405 in OpenAI's error shape so the SDK maps them cleanly."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    message = f"Invalid URL ({request.method} {request.url.path})"
    return ApiError(status, message, outcome="not_found").to_response()


def create_app(state: FakeModelState | None = None) -> Starlette:
    """Build the fake server. Without ``state``, latency defaults from the environment.

    The state is also exposed as ``app.state.fake`` for in-process callers.
    """
    handlers = _Handlers(state if state is not None else FakeModelState.from_env())
    routes = [
        Route("/v1/chat/completions", handlers.chat_completions, methods=["POST"]),
        Route("/v1/models", handlers.list_models, methods=["GET"]),
        Route("/v1/models/{model:path}", handlers.retrieve_model, methods=["GET"]),
        Route("/_fake/faults", handlers.add_faults, methods=["POST"]),
        Route("/_fake/faults", handlers.list_faults, methods=["GET"]),
        Route("/_fake/config", handlers.set_config, methods=["POST"]),
        Route("/_fake/config", handlers.get_config, methods=["GET"]),
        Route("/_fake/requests", handlers.list_requests, methods=["GET"]),
        Route("/_fake/reset", handlers.reset, methods=["POST"]),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    app.state.fake = handlers.state
    return app


# --------------------------------------------------------------------------- CLI


def build_arg_parser() -> argparse.ArgumentParser:
    """CLI flags for ``python -m devstack.fake_openai``."""
    parser = argparse.ArgumentParser(
        prog="python -m devstack.fake_openai", description="Fake OpenAI-compatible server for the local dev stack."
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=54330, help="port to bind (default: 54330)")
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=None,
        help=f"default simulated latency in ms (default: ${LATENCY_ENV_VAR} or 0)",
    )
    parser.add_argument("--log-level", default="warning", help="uvicorn log level (default: warning)")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: parse flags and serve until interrupted."""
    parser = build_arg_parser()
    args = parser.parse_args(argv)
    try:
        latency_ms = latency_ms_from_env() if args.latency_ms is None else _validate_latency(args.latency_ms)
    except ValueError as exc:
        parser.error(str(exc))
    app = create_app(FakeModelState(default_latency_ms=latency_ms))
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
