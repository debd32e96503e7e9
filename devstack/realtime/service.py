"""The Realtime stand-in as the gateway mounts it at /realtime/v1, with its background capture.

The WebSocket at `/websocket?apikey=<jwt>&vsn=<1.0.0|2.0.0>` refuses the upgrade with 401
`{"error"}` when the apikey is not a project JWT with `role` and `exp`, as Realtime does.
"""

from __future__ import annotations

import asyncio
import contextlib

from psycopg_pool import AsyncConnectionPool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket

from devstack.keys import JwtKeys
from devstack.realtime.authorization import Authorizer
from devstack.realtime.broadcast_api import BroadcastApi
from devstack.realtime.capture import ChangeCapture
from devstack.realtime.channels import Hub
from devstack.realtime.connection import OUTBOX_LIMIT, Connection
from devstack.realtime.frames import VSN_1, serializer_for
from devstack.realtime.tokens import TokenRejected, identity_of


class RealtimeService:
    """Owns the authorization pool, the change capture task and every joined channel."""

    def __init__(
        self, database_url: str, keys: JwtKeys, *, pool_size: int = 8, poll_seconds: float = 0.005,
        outbox_limit: int = OUTBOX_LIMIT,
    ) -> None:
        self.keys = keys
        self.outbox_limit = outbox_limit
        # The stand-in's connections switch into each subscriber's role, as Realtime's do.
        self.pool = AsyncConnectionPool(
            database_url, min_size=1, max_size=pool_size, open=False, check=AsyncConnectionPool.check_connection
        )
        self.authorizer = Authorizer(self.pool)
        self.hub = Hub(self.authorizer)
        self.capture = ChangeCapture(
            database_url, self.hub.deliver_transaction, lambda: self.hub.wants_changes, active_poll_seconds=poll_seconds
        )
        self.broadcast_api = BroadcastApi(self.hub, self.authorizer, keys)
        self._task: asyncio.Task[None] | None = None

    def routes(self) -> list[BaseRoute]:
        return [
            WebSocketRoute("/websocket", self.websocket),
            Route("/api/broadcast", self.broadcast_api.batch, methods=["POST"]),
            Route("/api/broadcast/{topic}/events/{event}", self.broadcast_api.single, methods=["POST"]),
            Route("/api/ping", self.ping, methods=["GET"]),
        ]

    async def ping(self, request: Request) -> JSONResponse:
        """Realtime's PingController: what a readiness check asks."""
        return JSONResponse({"message": "Success"})

    async def start(self) -> None:
        await self.pool.open(wait=True)
        self._task = asyncio.create_task(self.capture.run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.pool.close()

    async def websocket(self, websocket: WebSocket) -> None:
        try:
            serializer = serializer_for(websocket.query_params.get("vsn", VSN_1))
        except ValueError as error:
            await websocket.send_denial_response(JSONResponse({"error": str(error)}, status_code=400))
            return
        try:
            identity = identity_of(self.keys, websocket.query_params.get("apikey"))
        except TokenRejected as error:
            await websocket.send_denial_response(JSONResponse({"error": str(error)}, status_code=401))
            return
        await websocket.accept()
        await Connection(websocket, serializer, identity, self.hub, self.keys, self.capture, self.outbox_limit).run()
