"""One aiohttp session per reply engine loop, shared by the adapters the answering flow awaits
(the model, the pipeline's store, Realtime Broadcast).

aiohttp rather than httpx on the loop: its HTTP parser is in C, and a streamed reply is one
parsed chunk per token. The session is made on the loop that first asks for it (aiohttp binds a
session to its loop), so the adapters can be built in the app factory, before the engine's loop
exists, and in gunicorn's master, before the fork."""

from __future__ import annotations

import asyncio

import aiohttp

STORE_TIMEOUT_SECONDS = 10.0
KEEPALIVE_SECONDS = 4.0


class LoopSession:
    """The loop's shared `aiohttp.ClientSession`, opened on first use."""

    def __init__(self, max_connections: int = 256) -> None:
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def get(self) -> aiohttp.ClientSession:
        """The session of the running loop (a new one if the loop changed: tests run several)."""
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            self._loop = loop
            # No total timeout on the session: a streamed reply runs for minutes. Each adapter
            # passes the timeouts its calls need.
            # Idle connections are dropped before a server's own idle timeout (uvicorn's is 5 s) could
            # close one just as a request goes out on it: aiohttp does not retry a POST.
            connector = aiohttp.TCPConnector(
                limit=self.max_connections, limit_per_host=self.max_connections, keepalive_timeout=KEEPALIVE_SECONDS
            )
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=None), raise_for_status=False
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None
