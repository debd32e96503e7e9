"""Run an ASGI app with uvicorn on a background thread: how the stack and the tests host the
gateway and the fake model in-process, on loopback, without a fixed sleep anywhere."""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.types import ASGIApp


def free_port(host: str = "127.0.0.1") -> int:
    """A port free right now, for a child process that must bind it itself."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningServer:
    """Handle on a uvicorn server running in a background thread.

    ``url`` is the base URL (no trailing slash); ``stop()`` is idempotent. Usable as
    a context manager.
    """

    host: str
    port: int
    server: uvicorn.Server
    thread: threading.Thread
    sock: socket.socket

    @property
    def url(self) -> str:
        """Base URL such as ``http://127.0.0.1:41234``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def stop(self, timeout: float = 5.0) -> None:
        """Ask uvicorn to exit gracefully, force it after ``timeout``, free the socket."""
        if self.thread.is_alive():
            self.server.should_exit = True
            self.thread.join(timeout)
        if self.thread.is_alive():
            self.server.force_exit = True
            self.thread.join(timeout)
        self.sock.close()
        if self.thread.is_alive():
            raise RuntimeError(f"server at {self.url} did not stop within {2 * timeout:.1f}s")

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def serve_in_thread(
    app: ASGIApp,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    log_level: str = "warning",
    startup_timeout: float = 10.0,
    **config_kwargs: Any,
) -> RunningServer:
    """Run any ASGI app with uvicorn in a daemon thread and wait until it listens.

    Why we bind the socket ourselves: with ``port=0`` the OS picks a free port and we
    know it before uvicorn starts, with no probe-then-bind race. Extra keyword
    arguments go to ``uvicorn.Config`` (e.g. ``lifespan="off"``).
    """
    sock = _bind_socket(host, port)
    config = uvicorn.Config(app, log_level=log_level, **config_kwargs)
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn-{sock.getsockname()[1]}", daemon=True
    )
    running = RunningServer(host=host, port=sock.getsockname()[1], server=server, thread=thread, sock=sock)
    thread.start()
    try:
        _wait_until_started(running, startup_timeout)
    except BaseException:
        running.stop(timeout=1.0)
        raise
    return running


def _bind_socket(host: str, port: int) -> socket.socket:
    """Bind (not listen: uvicorn does that) a TCP socket for ``host:port``."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        if os.name != "nt":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as error:
        sock.close()
        raise OSError(error.errno, f"cannot listen on {host}:{port} ({error.strerror}): is another stack running?") from None
    return sock


def _wait_until_started(running: RunningServer, timeout: float) -> None:
    """Poll uvicorn's ``started`` flag until a deadline; fail fast if the thread dies."""
    deadline = time.monotonic() + timeout
    while not running.server.started:
        if not running.thread.is_alive():
            raise RuntimeError(f"server thread for {running.url} exited during startup")
        if time.monotonic() > deadline:
            raise TimeoutError(f"server at {running.url} did not start within {timeout}s")
        time.sleep(0.005)


