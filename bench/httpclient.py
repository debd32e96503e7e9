"""A minimal asyncio HTTP/1.1 keep-alive client for the load generator.

Why not httpx: its async client spends more CPU per request than the service under test does
at a few hundred concurrent requests (the fake model's author measured it), so on a 2-core
machine the load generator would become the bottleneck and the figures would measure the
client. This one does only what the benchmark needs: one persistent connection, a request
with a Content-Length body, a response with a Content-Length (or chunked) body.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

READ_LIMIT = 1 << 20  # longest header block we accept; replies are small JSON


class HttpError(Exception):
    """The server closed the connection or sent something that is not HTTP/1.1."""


@dataclass(frozen=True)
class HttpResponse:
    status: int
    body: bytes


class Connection:
    """One keep-alive connection to one host, used by one virtual user at a time."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        """Open (or re-open) the socket, so the timed requests never pay for a handshake."""
        await self.close()
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port, limit=READ_LIMIT)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
        self._reader = self._writer = None

    async def request(self, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> HttpResponse:
        """Send one request and read the whole response; reconnects if the server had closed."""
        if self._writer is None or self._writer.is_closing():
            await self.connect()
        assert self._reader is not None and self._writer is not None
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {len(body)}"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        self._writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        await self._writer.drain()
        return await self._read_response(self._reader)

    async def _read_response(self, reader: asyncio.StreamReader) -> HttpResponse:
        try:
            block = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError) as error:
            await self.close()
            raise HttpError(f"connection closed before a response: {error!r}") from None
        lines = block.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            await self.close()
            raise HttpError(f"not an HTTP/1.1 status line: {lines[0]!r}")
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name:
                fields[name.strip().lower()] = value.strip()
        if fields.get("transfer-encoding", "").lower() == "chunked":
            body = await self._read_chunked(reader)
        else:
            body = await reader.readexactly(int(fields.get("content-length", "0")))
        if fields.get("connection", "").lower() == "close":
            await self.close()
        return HttpResponse(int(parts[1]), body)

    @staticmethod
    async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
        chunks: list[bytes] = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")  # no trailers from our servers: the closing CRLF
                return b"".join(chunks)
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
