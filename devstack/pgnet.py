"""The delivery half of the pg_net stand-in: sends what net.http_post queued, after commit.

pg_net's background worker takes rows from net.http_request_queue, sends them once with the
request's timeout and writes the outcome to net._http_response; no retries, no ordering
promise. This worker does the same. It is woken by the NOTIFY that net.http_post sends (which
Postgres delivers only when the inserting transaction commits, so nothing uncommitted is sent)
and also polls, so a missed notification only delays a delivery.

For fault tests it can drop a share of deliveries or send each one twice, the failures a real
webhook path has.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row

CHANNEL = "devstack_pg_net"
logger = logging.getLogger("devstack.pgnet")


@dataclass
class DeliveryFaults:
    """Deliberate delivery failures, off by default."""

    drop_ratio: float = 0.0
    duplicate: bool = False
    paused: bool = False


class PgNetWorker:
    def __init__(self, database_url: str, batch_size: int = 100, poll_seconds: float = 0.5) -> None:
        self.database_url = database_url
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self.faults = DeliveryFaults()
        self.delivered = 0
        self._random = random.Random(0)

    async def run(self) -> None:
        """Deliver until cancelled; survives the database going away and coming back."""
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=200)) as client:
            while True:
                try:
                    await self._listen_and_deliver(client)
                except (psycopg.OperationalError, psycopg.InterfaceError) as error:
                    logger.warning("pg_net stand-in lost the database (%s); retrying", error)
                    await asyncio.sleep(self.poll_seconds)

    async def _listen_and_deliver(self, client: httpx.AsyncClient) -> None:
        async with await psycopg.AsyncConnection.connect(self.database_url, autocommit=True) as listener:
            await listener.execute(f"listen {CHANNEL}")
            async with await psycopg.AsyncConnection.connect(self.database_url, autocommit=True) as conn:
                while True:
                    while not self.faults.paused and await self.deliver_batch(conn, client):
                        pass
                    async for _ in listener.notifies(timeout=self.poll_seconds, stop_after=1):
                        break

    async def deliver_batch(self, conn: psycopg.AsyncConnection[Any], client: httpx.AsyncClient) -> int:
        cursor = conn.cursor(row_factory=dict_row)
        await cursor.execute(
            "delete from net.http_request_queue where id in ("
            " select id from net.http_request_queue order by id limit %s for update skip locked)"
            " returning id, method, url, headers, body, timeout_milliseconds",
            (self.batch_size,),
        )
        requests = await cursor.fetchall()
        if self.faults.duplicate:
            requests = requests + list(reversed(requests))
        outcomes = await asyncio.gather(*(self._send(client, request) for request in requests))
        await cursor.executemany(
            "insert into net._http_response (id, status_code, content_type, headers, content, timed_out, error_msg)"
            " values (%(id)s, %(status_code)s, %(content_type)s, %(headers)s, %(content)s, %(timed_out)s, %(error_msg)s)",
            [outcome for outcome in outcomes if outcome is not None],
        )
        return len(requests)

    async def _send(self, client: httpx.AsyncClient, request: dict[str, Any]) -> dict[str, Any] | None:
        outcome: dict[str, Any] = {
            "id": request["id"], "status_code": None, "content_type": None, "headers": None,
            "content": None, "timed_out": False, "error_msg": None,
        }
        if self._random.random() < self.faults.drop_ratio:
            outcome["error_msg"] = "dropped by devstack fault injection"
            return outcome
        try:
            response = await client.request(
                request["method"],
                request["url"],
                headers=request["headers"],
                content=bytes(request["body"] or b""),
                timeout=request["timeout_milliseconds"] / 1000,
            )
        except httpx.TimeoutException:
            outcome.update(timed_out=True, error_msg="Timeout was reached")
        except httpx.HTTPError as error:
            outcome["error_msg"] = f"Couldn't connect to server: {error}"
        else:
            self.delivered += 1
            outcome.update(
                status_code=response.status_code,
                content_type=response.headers.get("content-type"),
                headers=json.dumps(dict(response.headers)),
                content=response.text,
            )
        return outcome
