"""Two connection-level guards gunicorn does not give a WSGI app, as WSGI middleware.

1. **A refused body closes the connection, and says so.** When the app answers 413 it has not
   read the body, so the connection cannot carry another request: gunicorn would announce
   `Connection: keep-alive`, try to drain what is left (64 KiB, 5 s) and then drop the socket.
   Here the gunicorn response is told to close (`force_close`, so it sends `Connection: close`).
   gunicorn drops a `Connection` header set by the app, so asking it is the only honest way.
2. **A body must arrive within a deadline.** gunicorn's gthread worker reads a request body with
   no time limit: a client sending a byte every two seconds holds a thread for ever. A watchdog
   thread shuts the socket's read side when a body is still arriving `seconds` after the request
   started; the app's read then ends, and the caller gets 408 and a closed connection. (The
   request head is read by gunicorn before the app runs; in production an HTTP proxy in front,
   as Fly.io and Render have, reads it first.)
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from chat.logging import get_logger

logger = get_logger(__name__)
Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WsgiApp = Callable[[Environ, StartResponse], Iterable[bytes]]

TIMEOUT_BODY = json.dumps(
    {"error": {"code": "request_timeout", "message": "The request body arrived too slowly; send it again."}}
).encode()


def _force_close(start_response: StartResponse) -> None:
    """gunicorn's start_response is a bound method of its Response, which can be told to close."""
    force_close = getattr(getattr(start_response, "__self__", None), "force_close", None)
    if callable(force_close):
        force_close()


class BodyWatchdog:
    """One thread for every deadline of one process: a heap of (when, id), and the live ids."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int]] = []
        self._live: dict[int, Callable[[], None]] = {}
        self._ids = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def arm(self, seconds: float, cut: Callable[[], None]) -> int:
        with self._wake:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="body-watchdog", daemon=True)
                self._thread.start()
            entry_id = next(self._ids)
            self._live[entry_id] = cut
            heapq.heappush(self._heap, (time.monotonic() + seconds, entry_id))
            self._wake.notify()
            return entry_id

    def disarm(self, entry_id: int) -> None:
        with self._wake:
            self._live.pop(entry_id, None)

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._heap:
                    self._wake.wait()
                when, entry_id = self._heap[0]
                delay = when - time.monotonic()
                if delay > 0:
                    self._wake.wait(delay)
                    continue
                heapq.heappop(self._heap)
                cut = self._live.pop(entry_id, None)
            if cut is None:
                continue
            try:
                cut()
            except Exception:
                logger.exception("could not cut a slow request body")


class _WatchedInput:
    """wsgi.input, noting when the body has been read to its end (then the deadline is off)."""

    def __init__(self, stream: Any, length: int | None, finished: Callable[[], None]) -> None:
        self._stream = stream
        self._left = length
        self._finished = finished

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._stream.read(size) if size is not None and size >= 0 else self._stream.read()
        self._account(data, size)
        return data

    def readline(self, size: int = -1) -> bytes:
        data: bytes = self._stream.readline(size)
        self._account(data, size)
        return data

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")

    def _account(self, data: bytes, size: int | None) -> None:
        if self._left is not None:
            self._left -= len(data)
        if (self._left is not None and self._left <= 0) or (not data and size != 0):
            self._finished()


class HttpGuards:
    """The WSGI app wrapped with both guards (see the module docstring)."""

    def __init__(self, app: WsgiApp, body_timeout_seconds: float, watchdog: BodyWatchdog | None = None) -> None:
        self.app = app
        self.body_timeout_seconds = body_timeout_seconds
        self.watchdog = watchdog or BodyWatchdog()

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        sock = environ.get("gunicorn.socket")
        length = _content_length(environ)
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if sock is None or not (chunked or (length or 0) > 0):
            return self.app(environ, self._closing_on_413(start_response))

        state = {"cut": False, "done": False}
        lock = threading.Lock()

        def cut() -> None:
            with lock:
                if state["done"]:
                    return
                state["cut"] = True
            logger.warning("request body too slow; closing its connection", seconds=self.body_timeout_seconds)
            with contextlib.suppress(OSError):  # already closed by the client: nothing to cut
                sock.shutdown(socket.SHUT_RD)

        entry = self.watchdog.arm(self.body_timeout_seconds, cut)

        def finished() -> None:
            with lock:
                state["done"] = True
            self.watchdog.disarm(entry)

        environ["wsgi.input"] = _WatchedInput(environ["wsgi.input"], None if chunked else length, finished)
        try:
            result = self.app(environ, self._closing_on_413(start_response, lambda: state["cut"]))
        except BaseException:
            finished()
            raise
        if state["cut"]:
            if hasattr(result, "close"):
                result.close()
            finished()
            return [TIMEOUT_BODY]
        finished()
        return result

    @staticmethod
    def _closing_on_413(
        start_response: StartResponse, timed_out: Callable[[], bool] = lambda: False
    ) -> StartResponse:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if timed_out():
                _force_close(start_response)
                status = "408 Request Timeout"
                headers = [("Content-Type", "application/json"), ("Content-Length", str(len(TIMEOUT_BODY)))]
            elif status.startswith("413"):
                _force_close(start_response)
            return start_response(status, headers, exc_info)

        return start


def _content_length(environ: Environ) -> int | None:
    try:
        return int(environ.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None
