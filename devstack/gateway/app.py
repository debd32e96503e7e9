"""The gateway process: Supabase's API surface on one port, the pg_net stand-in beside it.

PostgREST logs in as `authenticator` (no privileges of its own) and switches into the request's
role per transaction; the REST pool does the same. On a server the stack started itself it logs
in as authenticator directly (local trust auth); on a DATABASE_URL server, which may want a
password, it logs in with that URL and drops to authenticator with `set role` on each new
connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from psycopg import AsyncConnection
from psycopg.conninfo import make_conninfo
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.routing import Mount

from devstack.gateway.auth import AuthService
from devstack.gateway.rest import rest_routes
from devstack.keys import JwtKeys
from devstack.pgnet import PgNetWorker
from devstack.realtime.service import RealtimeService


async def _become_authenticator(conn: AsyncConnection[Any]) -> None:
    await conn.execute("set role authenticator")
    await conn.commit()


def create_gateway(
    database_url: str,
    keys: JwtKeys,
    *,
    login_as_authenticator: bool = False,
    token_lifetime_seconds: int = 3600,
    pgnet: PgNetWorker | None = None,
    pool_size: int = 20,
    realtime: RealtimeService | None = None,
) -> Starlette:
    if login_as_authenticator:
        rest_pool = AsyncConnectionPool(
            make_conninfo(database_url, user="authenticator"), min_size=2, max_size=pool_size, open=False,
            check=AsyncConnectionPool.check_connection,
        )
    else:
        rest_pool = AsyncConnectionPool(
            database_url, min_size=2, max_size=pool_size, open=False, configure=_become_authenticator,
            check=AsyncConnectionPool.check_connection,
        )
    # check=: a restarted Postgres leaves dead connections in the pool; test each before use.
    auth_pool = AsyncConnectionPool(
        database_url, min_size=1, max_size=4, open=False, check=AsyncConnectionPool.check_connection
    )
    auth = AuthService(auth_pool, keys, token_lifetime_seconds)
    realtime = realtime or RealtimeService(database_url, keys)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await rest_pool.open(wait=True)
        await auth_pool.open(wait=True)
        await realtime.start()
        delivery = asyncio.create_task(pgnet.run()) if pgnet else None
        try:
            yield
        finally:
            await realtime.stop()
            if delivery:
                delivery.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await delivery
            await rest_pool.close()
            await auth_pool.close()

    return Starlette(
        routes=[
            Mount("/rest/v1", routes=rest_routes(rest_pool, keys)),
            Mount("/auth/v1", routes=auth.routes()),
            Mount("/realtime/v1", routes=realtime.routes()),
        ],
        lifespan=lifespan,
    )
