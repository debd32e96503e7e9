"""Changes captured from the database's own WAL, as Realtime captures them: logical decoding.

A temporary logical replication slot with pgoutput, the output plugin built into PostgreSQL, on
the `supabase_realtime` publication (Postgres Changes) and `supabase_realtime_messages_publication`
(broadcasts written with realtime.send). Decoding yields only committed transactions, in commit
order, with the old row as the table's REPLICA IDENTITY puts it in the WAL, whoever wrote them
(the SQL editor, psql, the service). Realtime's Postgres Changes polls a slot the same way
(`realtime.list_changes` over wal2json, which PostgreSQL does not ship); here the poll is short
while anyone is subscribed, and while nobody is the slot is only fast-forwarded.

The slot is temporary: it belongs to this connection and disappears with it, so a stopped stack
never leaves a slot holding WAL. Changes made while no slot exists are not delivered (Realtime
does not replay them either).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable

import psycopg

from devstack.realtime.pgoutput import PgOutputDecoder, Transaction

PUBLICATIONS = "supabase_realtime,supabase_realtime_messages_publication"
logger = logging.getLogger("devstack.realtime")


class ChangeCapture:
    """Polls the slot and hands each committed transaction, in commit order, to `deliver`."""

    def __init__(
        self,
        database_url: str,
        deliver: Callable[[Transaction], Awaitable[None]],
        wanted: Callable[[], bool],
        *,
        active_poll_seconds: float = 0.005,
        idle_poll_seconds: float = 0.5,
        retry_seconds: float = 0.5,
    ) -> None:
        self.database_url = database_url
        self.deliver = deliver
        self.wanted = wanted
        self.active_poll_seconds = active_poll_seconds
        self.idle_poll_seconds = idle_poll_seconds
        self.retry_seconds = retry_seconds
        self.ready = asyncio.Event()
        self.error: str | None = None
        self._wake = asyncio.Event()
        self._attempted = asyncio.Event()

    async def problem(self, timeout: float = 5.0) -> str | None:
        """None while capturing; otherwise why not. Waits for the first attempt, so a join that
        arrives while the gateway is starting is told the truth."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._attempted.wait(), timeout)
        if self.ready.is_set():
            return None
        return self.error or "change capture is not running yet"

    def wake(self) -> None:
        """Poll now rather than at the end of an idle wait: someone just subscribed."""
        self._wake.set()

    async def run(self) -> None:
        """Capture until cancelled; a lost database is retried, with a new slot."""
        while True:
            try:
                await self._capture()
            except (psycopg.OperationalError, psycopg.InterfaceError) as error:
                self.ready.clear()
                self.error = f"change capture cannot reach the database: {str(error).strip()}"
                logger.warning("realtime change capture lost the database (%s); retrying", error)
            except psycopg.Error as error:
                # wal_level below logical, no replication privilege, no free slot: joins with
                # postgres_changes get this as their system error; logged once per new cause.
                self.ready.clear()
                message = f"change capture unavailable: {str(error).strip()}"
                if message != self.error:
                    logger.error("realtime %s", message)
                self.error = message
            self._attempted.set()
            await asyncio.sleep(self.retry_seconds)

    async def _capture(self) -> None:
        slot = f"devstack_realtime_{uuid.uuid4().hex[:16]}"
        async with await psycopg.AsyncConnection.connect(self.database_url, autocommit=True) as conn:
            await conn.execute("select pg_create_logical_replication_slot(%s, 'pgoutput', true)", (slot,))
            self.error = None
            self.ready.set()
            self._attempted.set()
            decoder = PgOutputDecoder()
            while True:
                if not self.wanted():
                    # Nobody to deliver to: move the slot past what is flushed without handing a
                    # single row to Python (fast-forward decoding), so a bulk load costs little.
                    await conn.execute("select pg_replication_slot_advance(%s, pg_current_wal_flush_lsn())", (slot,))
                    await self._pause(self.idle_poll_seconds)
                    continue
                cursor = await conn.execute(
                    "select data from pg_logical_slot_get_binary_changes(%s, null, null,"
                    " 'proto_version', '1', 'publication_names', %s)",
                    (slot, PUBLICATIONS),
                )
                rows = await cursor.fetchall()
                for (data,) in rows:
                    transaction = decoder.feed(bytes(data))
                    if transaction is not None and transaction.changes:
                        try:
                            await self.deliver(transaction)
                        except Exception:
                            # One subscriber's failure must not stop delivery to the others.
                            logger.exception("realtime delivery of transaction %s failed", transaction.xid)
                if not rows:
                    await self._pause(self.active_poll_seconds)

    async def _pause(self, seconds: float) -> None:
        self._wake.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
