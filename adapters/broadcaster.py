"""Realtime Broadcast (chat.ports.ReplyBroadcaster) through Realtime's REST endpoint,
`POST /realtime/v1/api/broadcast`, as the service role: many messages, for many replies and
channels, in one request, so a process streaming 64 replies sends one request per interval.
Sent from the reply engine's loop, on its shared aiohttp session."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from adapters.http_session import LoopSession
from chat.errors import BroadcastFailed
from chat.ports import Broadcast

BROADCAST_TIMEOUT = aiohttp.ClientTimeout(total=10.0)
PING_TIMEOUT = aiohttp.ClientTimeout(total=3.0)


class RealtimeBroadcaster:
    def __init__(self, supabase_url: str, service_role_key: str, session: LoopSession) -> None:
        self.url = f"{supabase_url.rstrip('/')}/realtime/v1/api/broadcast"
        self.ping_url = f"{supabase_url.rstrip('/')}/realtime/v1/api/ping"
        self.headers = {"apikey": service_role_key, "Authorization": f"Bearer {service_role_key}"}
        self.session = session

    async def send(self, messages: list[Broadcast]) -> None:
        body = {
            "messages": [
                {"topic": message.topic, "event": message.event, "payload": message.payload, "private": True}
                for message in messages
            ]
        }
        status = await self._status(self.session.get().post(self.url, json=body, headers=self.headers,
                                                             timeout=BROADCAST_TIMEOUT))
        if status >= 300:
            raise BroadcastFailed(f"Realtime refused the broadcast ({status})")

    async def ping(self) -> None:
        """Readiness: Realtime's own ping (`GET /api/ping`), through the project's gateway."""
        status = await self._status(self.session.get().get(self.ping_url, headers=self.headers, timeout=PING_TIMEOUT))
        if status >= 300:
            raise BroadcastFailed(f"Realtime answered {status}")

    @staticmethod
    async def _status(request: Any) -> int:
        """The answer's status, its body read (so the connection goes back to the pool); a
        transport failure is BroadcastFailed."""
        try:
            async with request as response:
                await response.read()
                return int(response.status)
        except (aiohttp.ClientError, asyncio.TimeoutError) as error:
            raise BroadcastFailed(f"Realtime unreachable: {type(error).__name__}") from error
