"""The load generator: a separate process that drives one scenario and prints its figures as JSON.

Why a separate process: the benchmark's own process hosts the local Supabase stand-ins (gateway,
pg_net, fake model) on background threads. Generating load there would make the client and
those servers fight over one GIL, and the figures would measure that fight. Here the client has
its own interpreter, talks to the service over loopback like any caller, and reports how much
CPU it used and how late its event loop ran, so a reader can see it was not the bottleneck.

    echo '{"kind": "http", ...}' | python -m bench.loadgen      # one JSON object in, one out

Two kinds of job:

* ``http``: every virtual user holds one keep-alive connection and sends POST requests one after
  the other (``rounds`` each, or ``requests`` shared by all), each timed from the first byte
  written to the last byte read. Users start spread over ``ramp_seconds``.
* ``pipeline``: every conversation inserts a user message as ``authenticated`` with real JWT
  claims through psycopg (the RLS path a frontend takes), commits, waits for the reply row, and
  sends its next message; the figure is the reply's created_at minus the wall clock when COMMIT
  returned (same host clock).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bench.httpclient import Connection, HttpError

LAG_TICK_SECONDS = 0.01
PRIORITY_NICENESS = -5


@dataclass
class Tally:
    """What one run measured, in the shape printed as JSON."""

    latencies_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    planned: int = 0
    wall_seconds: float = 0.0
    setup_seconds: float = 0.0
    loop_lag_ms: list[float] = field(default_factory=list)

    def to_json(self, cpu_seconds: float) -> dict[str, Any]:
        lags = sorted(self.loop_lag_ms) or [0.0]
        return {
            "latencies_ms": [round(value, 3) for value in self.latencies_ms],
            "ok": len(self.latencies_ms),
            "errors": dict(self.errors),
            "error_count": sum(self.errors.values()),
            "planned": self.planned,
            "wall_seconds": round(self.wall_seconds, 4),
            "setup_seconds": round(self.setup_seconds, 4),
            "throughput_rps": round(len(self.latencies_ms) / self.wall_seconds, 3) if self.wall_seconds else 0.0,
            "loadgen_cpu_seconds": round(cpu_seconds, 3),
            "loadgen_cpu_share": round(cpu_seconds / (self.wall_seconds + self.setup_seconds), 3)
            if self.wall_seconds
            else 0.0,
            "loop_lag_p99_ms": round(lags[int(0.99 * (len(lags) - 1))], 2),
            "loop_lag_max_ms": round(lags[-1], 2),
        }


async def watch_loop_lag(tally: Tally) -> None:
    """How late the event loop wakes a 10 ms sleeper: the client's own queueing, if any."""
    while True:
        started = time.perf_counter()
        await asyncio.sleep(LAG_TICK_SECONDS)
        tally.loop_lag_ms.append(max(0.0, (time.perf_counter() - started - LAG_TICK_SECONDS) * 1000))


def stagger(index: int, users: int, ramp_seconds: float) -> float:
    """When user `index` starts. Spread evenly over the ramp: with a constant model latency,
    users that all start at once stay in lockstep forever, and every request then arrives in a
    burst that no real traffic has; spread out, N users keep N requests in flight, evenly."""
    return ramp_seconds * index / users if users > 1 else 0.0


# --------------------------------------------------------------------------- http


class HttpScenario:
    """Virtual users POSTing to one path template, one keep-alive connection each."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.host: str = job["host"]
        self.port: int = int(job["port"])
        self.path_template: str = job["path_template"]
        self.users: list[dict[str, str]] = job["users"]
        self.rounds: int = int(job.get("rounds", 1))
        self.total_requests: int | None = job.get("requests")
        self.deadline: float = float(job.get("deadline_seconds", 120))
        self.request_timeout: float = float(job.get("request_timeout_seconds", 65))
        self.label: str = job.get("label", "load")
        self.ramp: float = float(job.get("ramp_seconds", 0))
        self.tally = Tally(planned=self.total_requests or self.rounds * len(self.users))
        self._issued = 0

    async def run(self) -> Tally:
        connections = [Connection(self.host, self.port) for _ in self.users]
        started = time.perf_counter()
        await asyncio.gather(*(connection.connect() for connection in connections))
        self.tally.setup_seconds = time.perf_counter() - started
        lag = asyncio.ensure_future(watch_loop_lag(self.tally))
        started = time.perf_counter()
        tasks = [asyncio.ensure_future(self._user(i, connection)) for i, connection in enumerate(connections)]
        done, pending = await asyncio.wait(tasks, timeout=self.deadline)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        self.tally.wall_seconds = time.perf_counter() - started
        lag.cancel()
        await asyncio.gather(*(connection.close() for connection in connections), return_exceptions=True)
        for task in done:
            if task.exception() is not None:
                self.tally.errors[f"client crash: {task.exception()!r}"] += 1
        return self.tally

    def _next_request(self, sent_by_user: int) -> bool:
        if self.total_requests is None:
            return sent_by_user < self.rounds
        if self._issued >= self.total_requests:
            return False
        self._issued += 1
        return True

    async def _user(self, index: int, connection: Connection) -> None:
        user = self.users[index]
        path = self.path_template.format(conversation_id=user["conversation_id"])
        headers = {"Authorization": f"Bearer {user['token']}", "Content-Type": "application/json"}
        await asyncio.sleep(stagger(index, len(self.users), self.ramp))
        sent = 0
        while self._next_request(sent):
            body = json.dumps({"message": f"{self.label} user {index} request {sent}", "user_id": user["user_id"]})
            sent += 1
            started = time.perf_counter()
            try:
                response = await asyncio.wait_for(
                    connection.request("POST", path, headers, body.encode()), self.request_timeout
                )
            except asyncio.CancelledError:
                self.tally.errors["cut off at the step deadline"] += 1  # sent, never answered in time
                raise
            except asyncio.TimeoutError:
                self.tally.errors["client timeout"] += 1
                await connection.connect()
                continue
            except (HttpError, OSError) as error:
                self.tally.errors[f"connection: {type(error).__name__}"] += 1
                await connection.connect()
                continue
            elapsed_ms = (time.perf_counter() - started) * 1000
            if response.status != 200:
                self.tally.errors[f"HTTP {response.status}"] += 1
            elif b'"response"' not in response.body:
                self.tally.errors["200 without a response field"] += 1
            else:
                self.tally.latencies_ms.append(elapsed_ms)


# --------------------------------------------------------------------------- pipeline


class PipelineScenario:
    """Conversations inserting as the user through psycopg and waiting for each reply row."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.database_url: str = job["database_url"]
        self.conversations: list[dict[str, str]] = job["conversations"]
        self.messages: int = int(job["messages"])
        self.warmup: int = int(job.get("warmup", 1))
        self.poll_seconds: float = float(job.get("poll_seconds", 0.005))
        self.deadline: float = float(job.get("deadline_seconds", 120))
        self.reply_timeout: float = float(job.get("reply_timeout_seconds", 60))
        self.pool_size: int = int(job.get("pool_size", 16))
        self.label: str = job.get("label", "pipeline")
        self.ramp: float = float(job.get("ramp_seconds", 0))
        self.tally = Tally(planned=self.messages * len(self.conversations))
        self._waiting: dict[str, asyncio.Future[float]] = {}

    async def run(self) -> Tally:
        import psycopg  # only this scenario needs it; the http one starts faster without

        started = time.perf_counter()
        pool: asyncio.Queue[psycopg.AsyncConnection[Any]] = asyncio.Queue()
        for _ in range(min(self.pool_size, len(self.conversations))):
            pool.put_nowait(await psycopg.AsyncConnection.connect(self.database_url))
        watcher = await psycopg.AsyncConnection.connect(self.database_url, autocommit=True)
        self.tally.setup_seconds = time.perf_counter() - started
        poller = asyncio.ensure_future(self._poll_replies(watcher))
        lag = asyncio.ensure_future(watch_loop_lag(self.tally))
        started = time.perf_counter()
        tasks = [asyncio.ensure_future(self._conversation(i, pool)) for i in range(len(self.conversations))]
        done, pending = await asyncio.wait(tasks, timeout=self.deadline)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        self.tally.wall_seconds = time.perf_counter() - started
        if pending:
            self.tally.errors["cut off at the step deadline"] += len(pending)
        for task in done:
            if task.exception() is not None:
                self.tally.errors[f"client crash: {task.exception()!r}"] += 1
        poller.cancel()
        lag.cancel()
        await asyncio.gather(poller, lag, return_exceptions=True)
        await watcher.close()
        while not pool.empty():
            await pool.get_nowait().close()
        return self.tally

    async def _conversation(self, index: int, pool: asyncio.Queue[Any]) -> None:
        conversation = self.conversations[index]
        claims = json.dumps({"sub": conversation["user_id"], "role": "authenticated", "aud": "authenticated"})
        await asyncio.sleep(stagger(index, len(self.conversations), self.ramp))
        for n in range(self.warmup + self.messages):
            conn = await pool.get()
            try:
                await conn.execute(
                    "select set_config('role', 'authenticated', true), set_config('request.jwt.claims', %s, true)",
                    (claims,),
                )
                cursor = await conn.execute(
                    "insert into public.messages (conversation_id, content) values (%s, %s) returning id",
                    (conversation["conversation_id"], f"{self.label} conversation {index} message {n}"),
                )
                row = await cursor.fetchone()
                await conn.commit()
                committed = time.time()
            finally:
                pool.put_nowait(conn)
            assert row is not None
            reply = asyncio.get_running_loop().create_future()
            self._waiting[str(row[0])] = reply
            try:
                replied_at = await asyncio.wait_for(reply, self.reply_timeout)
            except asyncio.TimeoutError:
                self.tally.errors["no reply within the timeout"] += 1
                continue
            finally:
                self._waiting.pop(str(row[0]), None)
            if n >= self.warmup:
                self.tally.latencies_ms.append((replied_at - committed) * 1000)

    async def _poll_replies(self, watcher: Any) -> None:
        """One query for every waiting message: cheap for Postgres whatever the concurrency."""
        while True:
            if self._waiting:
                cursor = await watcher.execute(
                    # When the reply row appeared (a streamed reply's first token, a whole reply's
                    # end), once it has settled: the conversation's next message follows its reply.
                    "select reply_to::text, extract(epoch from created_at)::float8 from public.messages"
                    " where reply_to = any(%s::uuid[]) and status in ('done', 'failed', 'stopped')",
                    (list(self._waiting),),
                )
                for message_id, created in await cursor.fetchall():
                    future = self._waiting.get(message_id)
                    if future is not None and not future.done():
                        future.set_result(float(created))
            await asyncio.sleep(self.poll_seconds)


async def run_job(job: dict[str, Any]) -> dict[str, Any]:
    cpu_started = time.process_time()
    scenario: HttpScenario | PipelineScenario
    if job["kind"] == "http":
        scenario = HttpScenario(job)
    elif job["kind"] == "pipeline":
        scenario = PipelineScenario(job)
    else:
        raise SystemExit(f"unknown job kind {job['kind']!r}")
    tally = await scenario.run()
    return tally.to_json(time.process_time() - cpu_started)


def raise_priority() -> None:
    """Ask the scheduler to run the client first: on a saturated 2-core machine a client that waits
    for a core stamps responses late and inflates every latency it reports. It uses a small share of
    a core (reported), so this costs the servers little. Without the privilege, run as is."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, 0, PRIORITY_NICENESS)


def main() -> None:
    raise_priority()
    job = json.loads(sys.stdin.read())
    result = asyncio.run(run_job(job))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
