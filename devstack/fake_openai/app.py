"""The fake's Starlette app: the OpenAI routes and the control API (/_fake/...), bound to one
FakeModelState."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from devstack.fake_openai.errors import OpenAIError
from devstack.fake_openai.replies import (
    STREAM_ERROR_FRAME,
    completion_body,
    fault_error,
    reply_text,
    split_for_stream,
    sse_frames,
    stream_chunks,
)
from devstack.fake_openai.requests import (
    ChatRequest,
    has_bearer_token,
    last_user_text,
    non_negative,
    parse_chat_request,
    parse_faults,
    read_json,
    unauthorized,
)
from devstack.fake_openai.state import FAKE_MODEL_ID, FakeModelState, Fault, JsonDict, RecordedRequest


@dataclass(frozen=True)
class StreamPacing:
    """How a streamed reply is paced: the time to first token, then tokens per second (0 = all
    at once), so tests and benchmarks see the timing of a real model rather than one burst."""

    first_token_seconds: float
    tokens_per_second: float

    def due(self, index: int) -> float:
        """Seconds after the stream opened at which content piece ``index`` is sent."""
        step = 1 / self.tokens_per_second if self.tokens_per_second > 0 else 0.0
        return self.first_token_seconds + index * step


async def _paced(
    frames: Sequence[str], pieces: int, pacing: StreamPacing, entry: RecordedRequest, error_after: int | None
) -> AsyncIterator[str]:
    """The role chunk at once, then each content piece when it is due, then the tail.

    An async generator, so Starlette streams it on the event loop; when the client closes the
    connection Starlette cancels it, and ``finally`` records how far it got (what a stopped
    reply would have been billed for)."""
    opened = time.monotonic()
    try:
        yield frames[0]
        for index in range(pieces):
            if error_after is not None and index >= error_after:
                entry.stream_end = "error"
                yield STREAM_ERROR_FRAME
                return
            wait = opened + pacing.due(index) - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            yield frames[1 + index]
            entry.tokens_sent += 1
        for frame in frames[1 + pieces :]:
            yield frame
        entry.stream_end = "complete"
    finally:
        if entry.stream_end is None:
            entry.stream_end = "client_closed"
        entry.stream_ended_at = time.time()


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


class _Handlers:
    """Request handlers bound to one ``FakeModelState`` (one state per app)."""

    def __init__(self, state: FakeModelState) -> None:
        self.state = state

    async def chat_completions(self, request: Request) -> Response:
        """Validate, record, apply latency/faults, then answer (JSON or SSE)."""
        try:
            chat = await self._accept(request)
        except OpenAIError as exc:
            return self._with_request_id(exc.to_response())
        fault = self.state.take_fault(chat.last_user_text)
        entry = self._record(chat, fault.kind if fault else "ok")
        streams_paced = chat.stream and (fault is None or fault.kind == "stream_error")
        delay = 0.0 if streams_paced else self.state.latency_ms / 1000
        delay += fault.seconds if fault and fault.kind == "hang" else 0.0
        await sleep_unless_disconnected(request, delay)
        if fault is not None and fault.kind not in ("hang", "stream_error"):
            return self._with_request_id(fault_error(fault, chat.model).to_response())
        return self._with_request_id(self._answer(chat, entry, fault))

    async def _accept(self, request: Request) -> ChatRequest:
        """Auth + body validation; rejected requests are still recorded."""
        if not has_bearer_token(request):
            self._record_rejected(None, "unauthorized")
            raise unauthorized()
        body: object = None
        try:
            body = await read_json(request)
            return parse_chat_request(body)
        except OpenAIError as exc:
            self._record_rejected(body, exc.outcome)
            raise

    def _record(self, chat: ChatRequest, outcome: str) -> RecordedRequest:
        """Log an accepted request."""
        return self.state.record_request(
            model=chat.model,
            messages=chat.messages,
            stream=chat.stream,
            outcome=outcome,
            user_text=chat.last_user_text,
            max_tokens=chat.max_tokens,
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

    def _answer(self, chat: ChatRequest, entry: RecordedRequest, fault: Fault | None) -> Response:
        """Build the successful completion, streamed or not."""
        completion_id = self.state.next_id("chatcmpl")
        created = int(time.time())
        if not chat.stream:
            return JSONResponse(completion_body(chat, completion_id, created))
        frames = sse_frames(stream_chunks(chat, completion_id, created))
        pacing = StreamPacing(self.state.latency_ms / 1000, self.state.tokens_per_second)
        error_after = fault.after_tokens if fault is not None and fault.kind == "stream_error" else None
        return StreamingResponse(
            _paced(frames, len(split_for_stream(reply_text(chat))), pacing, entry, error_after),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache"},
        )

    def _with_request_id(self, response: Response) -> Response:
        """Add ``x-request-id`` (the SDK exposes it as ``request_id`` on errors)."""
        response.headers["x-request-id"] = self.state.next_id("req")
        return response

    async def list_models(self, request: Request) -> Response:
        """``GET /v1/models``: advertise ``fake-model`` (completions accept any name)."""
        if not has_bearer_token(request):
            return unauthorized().to_response()
        return JSONResponse({"object": "list", "data": [_model_object(FAKE_MODEL_ID)]})

    async def retrieve_model(self, request: Request) -> Response:
        """``GET /v1/models/{model}``: every model name exists, mirroring completions."""
        if not has_bearer_token(request):
            return unauthorized().to_response()
        return JSONResponse(_model_object(request.path_params["model"]))

    async def add_faults(self, request: Request) -> Response:
        """``POST /_fake/faults``: append faults to the FIFO queue."""
        try:
            faults = parse_faults(await read_json(request))
        except OpenAIError as exc:
            return exc.to_response()
        return JSONResponse({"queued": self.state.add_faults(faults)})

    async def list_faults(self, request: Request) -> Response:
        """``GET /_fake/faults``: show pending faults (handy when a test misbehaves)."""
        return JSONResponse({"faults": [asdict(fault) for fault in self.state.pending_faults()]})

    async def set_config(self, request: Request) -> Response:
        """``POST /_fake/config``: change latency at runtime."""
        try:
            body = await read_json(request)
            fields = body if isinstance(body, dict) else {}
            self.state.set_latency_ms(non_negative(fields, "latency_ms", self.state.latency_ms))
            self.state.set_tokens_per_second(non_negative(fields, "tokens_per_second", self.state.tokens_per_second))
        except OpenAIError as exc:
            return exc.to_response()
        return await self.get_config(request)

    async def get_config(self, request: Request) -> Response:
        """``GET /_fake/config``: current and default latency and streaming pace."""
        return JSONResponse(
            {
                "latency_ms": self.state.latency_ms,
                "default_latency_ms": self.state.default_latency_ms,
                "tokens_per_second": self.state.tokens_per_second,
                "default_tokens_per_second": self.state.default_tokens_per_second,
            }
        )

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
    return OpenAIError(status, message, outcome="not_found").to_response()


def create_fake_openai(state: FakeModelState | None = None) -> Starlette:
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
