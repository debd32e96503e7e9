"""Telling the other worker processes of this instance that a message is settled.

gunicorn runs several worker processes, and a webhook often lands on a different one than the
POST /api/chat request waiting for its reply. The database poll finds it within
CHAT_POLL_INTERVAL_SECONDS; this makes it immediate for siblings on the same machine: each worker
listens on a loopback UDP port registered in a folder shared by the workers of one gunicorn master,
and a worker that settles a message sends its id to the others. Losing a datagram costs only the
poll interval; a forged one costs one query, since the woken waiter reads the outcome from the
database."""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

from chat.logging import get_logger

logger = get_logger(__name__)


class SiblingNotifier:
    """The SiblingProcesses port (chat/ports.py) over loopback UDP."""

    def __init__(self, group: str | None = None) -> None:
        self.on_settled: Callable[[str], None] = lambda _message_id: None
        # Workers of one gunicorn master share its pid as their parent.
        self.folder = Path(tempfile.gettempdir()) / f"ai-chat-server-siblings-{group or os.getppid()}"
        self._socket: socket.socket | None = None
        self._registration: Path | None = None

    def start(self, on_settled: Callable[[str], None]) -> None:
        """Bind, register, listen; `on_settled` hears each id a sibling sends. Called once per
        process, after the fork."""
        if self._socket is not None:
            return
        self.on_settled = on_settled
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        self.folder.mkdir(mode=0o700, exist_ok=True)
        self._forget_dead_siblings()
        self._registration = self.folder / str(os.getpid())
        self._registration.write_text(str(self._socket.getsockname()[1]))
        threading.Thread(target=self._listen, name="sibling-listener", daemon=True).start()

    def broadcast(self, message_id: str) -> None:
        if self._socket is None:
            return
        payload = message_id.encode()
        for port in self._sibling_ports():
            with contextlib.suppress(OSError):
                self._socket.sendto(payload, ("127.0.0.1", port))

    def stop(self) -> None:
        if self._registration is not None:
            self._registration.unlink(missing_ok=True)

    def _forget_dead_siblings(self) -> None:
        """A worker killed with SIGKILL never unregisters: drop entries whose process is gone."""
        for entry in self.folder.iterdir():
            try:
                os.kill(int(entry.name), 0)
            except ProcessLookupError:
                entry.unlink(missing_ok=True)
            except (ValueError, PermissionError):
                continue

    def _sibling_ports(self) -> list[int]:
        ports = []
        for entry in self.folder.iterdir() if self.folder.exists() else []:
            if entry != self._registration:
                with contextlib.suppress(OSError, ValueError):
                    ports.append(int(entry.read_text()))
        return ports

    def _listen(self) -> None:
        assert self._socket is not None
        while True:
            try:
                payload, _ = self._socket.recvfrom(64)
                self.on_settled(str(uuid.UUID(payload.decode())))
            except (OSError, ValueError, UnicodeDecodeError):
                continue
