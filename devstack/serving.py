"""Run an ASGI app with uvicorn on a background thread: how the stack and the tests host the
gateway and the fake model in-process, on loopback, without a fixed sleep anywhere."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import uvicorn

START_DEADLINE_SECONDS = 15.0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningServer:
    server: uvicorn.Server
    thread: threading.Thread
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def serve_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0, **config: Any) -> RunningServer:
    """Start `app` and return once it accepts connections (or raise with the reason)."""
    port = port or free_port(host)
    settings = {"log_level": "warning", "lifespan": "on", "timeout_keep_alive": 30, **config}
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, **settings))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), name=f"uvicorn:{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_DEADLINE_SECONDS
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"server on {host}:{port} did not start (port taken or lifespan failed)")
        time.sleep(0.01)
    return RunningServer(server, thread, host, port)
