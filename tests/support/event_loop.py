"""One event loop for a test module, driven from plain (synchronous) tests, with the aiohttp
session the adapters share on it (adapters/http_session.py), closed when the module is done."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from adapters.http_session import LoopSession

T = TypeVar("T")


class LoopRunner:
    """`run(coroutine)` runs it to the end on the module's loop; the loop is idle in between, so
    a test may talk to servers synchronously (the fake's control API) between runs."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.session = LoopSession()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout_seconds: float = 30) -> T:
        return self.loop.run_until_complete(asyncio.wait_for(coroutine, timeout_seconds))

    def close(self) -> None:
        """Close the session (and its connections) on its loop, then the loop: no "Unclosed
        client session" when the module ends."""
        self.loop.run_until_complete(self.session.close())
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()
