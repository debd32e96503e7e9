"""The gateway process: Supabase's API surface on one port, the pg_net stand-in beside it.

PostgREST connects as `authenticator` and switches into the request's role per transaction;
the pool here does the same by setting the session role to authenticator on each new
connection, which also works when DATABASE_URL names a server that wants a password.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.routing import Mount

from devstack.gateway.auth import AuthService
from devstack.gateway.rest import rest_routes
from devstack.keys import JwtKeys
from devstack.pgnet import PgNetWorker


async def _become_authenticator(conn: AsyncConnection[Any]) -> None:
    await conn.execute("set role authenticator")
    await conn.commit()


def create_gateway(
    database_url: str,
    keys: JwtKeys,
    *,
    token_lifetime_seconds: int = 3600,
    pgnet: PgNetWorker | None = None,
    pool_size: int = 20,
) -> Starlette:
    rest_pool = AsyncConnectionPool(
        database_url, min_size=2, max_size=pool_size, open=False, configure=_become_authenticator
    )
    auth_pool = AsyncConnectionPool(database_url, min_size=1, max_size=4, open=False)
    auth = AuthService(auth_pool, keys, token_lifetime_seconds)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await rest_pool.open(wait=True)
        await auth_pool.open(wait=True)
        delivery = asyncio.create_task(pgnet.run()) if pgnet else None
        try:
            yield
        finally:
            if delivery:
                delivery.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await delivery
            await rest_pool.close()
            await auth_pool.close()

    return Starlette(
        routes=[Mount("/rest/v1", routes=rest_routes(rest_pool, keys)), Mount("/auth/v1", routes=auth.routes())],
        lifespan=lifespan,
    )
