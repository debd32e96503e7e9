"""The reply engine's loop, for synchronous tests: one asyncio loop running in a thread of its own
for as long as a module keeps it, as the engine keeps one per process. Tests hand it coroutines
(`run` waits for the result, `submit` does not), so what binds to a loop (a LoopSession's aiohttp
session) is made once and closed at the end rather than per call, and several answers can be in
flight on it at once, as they are in the service."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

from adapters.http_session import LoopSession
from adapters.reply_store import PostgrestReplyStore

T = TypeVar("T")
RUN_DEADLINE_SECONDS = 30.0


class EngineLoop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.sessions: list[LoopSession] = []
        self._thread = threading.Thread(target=self.loop.run_forever, name="test-engine-loop", daemon=True)
        self._thread.start()

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def run(self, coroutine: Coroutine[Any, Any, T], deadline_seconds: float = RUN_DEADLINE_SECONDS) -> T:
        return self.submit(coroutine).result(deadline_seconds)

    def call_soon(self, callback: Callable[[], object]) -> None:
        """Run `callback` on the loop (setting an asyncio.Event from the test's thread)."""
        self.loop.call_soon_threadsafe(callback)

    def session(self) -> LoopSession:
        """A LoopSession closed with this loop."""
        self.sessions.append(LoopSession(max_connections=16))
        return self.sessions[-1]

    def reply_store(self, supabase_url: str, service_role_key: str) -> PostgrestReplyStore:
        """The production adapter on a session of its own, closed with this loop."""
        return PostgrestReplyStore(supabase_url, service_role_key, self.session())

    def close(self) -> None:
        for session in self.sessions:
            self.run(session.close())
        self.run(self.loop.shutdown_asyncgens())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(RUN_DEADLINE_SECONDS)
        self.loop.close()


@contextlib.contextmanager
def engine_loop() -> Iterator[EngineLoop]:
    running = EngineLoop()
    try:
        yield running
    finally:
        running.close()
