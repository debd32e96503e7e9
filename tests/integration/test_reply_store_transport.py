"""The aiohttp reply store over real sockets when nothing useful answers: a closed port, a server
that accepts and never answers, one that hangs up mid-answer. Each is StoreUnavailable (the
pipeline leaves the message to its lease), within the store's timeout, never a hang."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

import aiohttp
import pytest

from chat.errors import StoreUnavailable
from devstack.serving import free_port
from tests.support.engine_loop import EngineLoop

TIMEOUT_SECONDS = 0.5



def serve(behaviour: Callable[[socket.socket], None]) -> tuple[str, socket.socket]:
    """A listening socket on a free port; each connection gets `behaviour`."""
    listener = socket.create_server(("127.0.0.1", 0))

    def accept() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=behaviour, args=(connection,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}", listener


def never_answers(connection: socket.socket) -> None:
    connection.recv(65536)
    time.sleep(TIMEOUT_SECONDS * 4)
    connection.close()


def hangs_up_mid_answer(connection: socket.socket) -> None:
    connection.recv(65536)
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"superse")
    connection.close()


@pytest.mark.parametrize(
    ("behaviour", "reads"),
    [
        pytest.param(never_answers, r"unreachable during reply_tick: (Socket|Server)?TimeoutError", id="never answers"),
        pytest.param(hangs_up_mid_answer, r"unreachable during reply_tick: ClientPayloadError", id="hangs up mid-answer"),
    ],
)
def test_a_server_that_fails_to_answer_is_store_unavailable(
    engine: EngineLoop, behaviour: Callable[[socket.socket], None], reads: str
) -> None:
    url, listener = serve(behaviour)
    replies = engine.reply_store(url, "key")
    replies.timeout = aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match=reads):
        engine.run(replies.reply_tick([], [], 60))
    assert time.monotonic() - started < TIMEOUT_SECONDS * 3
    listener.close()


def test_a_closed_port_is_store_unavailable(engine: EngineLoop) -> None:
    replies = engine.reply_store(f"http://127.0.0.1:{free_port()}", "key")
    with pytest.raises(StoreUnavailable, match=r"unreachable during release_message: ClientConnectorError"):
        engine.run(replies.release_message("m-1", "t-1"))
