"""`python -m bench.realtime_subscribers`: the subscribers and the writer of the Realtime figure,
in a process of their own (the stand-in runs in the benchmark's process; sharing its GIL would
time the client's Python as well as the server's).

Reads a job on stdin: `{"realtime_url", "api_key", "database_url", "subscribers": [{"token",
"filter"?}], "owner_index", "writer": {"conversation_id", "user_id"}, "samples", "wait_for"}`.
Opens every socket (protocol 2.0.0, as supabase-js), joins one channel each with a postgres_changes
binding on messages INSERT, then commits one message at a time and times, for each, from the
moment its commit returned to the first and the last expected frame. Prints the latencies as JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import psycopg
from websockets.asyncio.client import ClientConnection, connect

DEADLINE_SECONDS = 10.0


async def join(url: str, token: str, filter_: str | None, index: int) -> ClientConnection:
    socket = await connect(url, max_queue=None)
    binding: dict[str, Any] = {"event": "INSERT", "schema": "public", "table": "messages"}
    if filter_:
        binding["filter"] = filter_
    await socket.send(json.dumps(["1", "1", f"realtime:bench-{index}", "phx_join",
                                  {"config": {"postgres_changes": [binding]}, "access_token": token}]))
    while True:
        frame = json.loads(await socket.recv())
        if frame[3] == "system":
            if frame[4]["status"] != "ok":
                raise RuntimeError(f"subscription failed: {frame[4]}")
            return socket


async def first_change(socket: ClientConnection, content: str) -> float:
    """When the change carrying `content` arrived on this socket (perf_counter seconds)."""
    while True:
        raw = await socket.recv()
        frame = json.loads(raw)
        if frame[3] == "postgres_changes" and frame[4]["data"]["record"]["content"] == content:
            return time.perf_counter()


async def run(job: dict[str, Any]) -> dict[str, Any]:
    url = f"{job['realtime_url']}/websocket?apikey={job['api_key']}&vsn=2.0.0"
    sockets = [await join(url, s["token"], s.get("filter"), i) for i, s in enumerate(job["subscribers"])]
    receivers = [sockets[i] for i in job["wait_for"]]
    first_ms: list[float] = []
    last_ms: list[float] = []
    writer = job["writer"]
    async with await psycopg.AsyncConnection.connect(job["database_url"], autocommit=True) as conn:
        for sample in range(job["warmup"] + job["samples"]):
            content = f"bench {sample} {time.time_ns()}"
            waits = [asyncio.create_task(first_change(socket, content)) for socket in receivers]
            await conn.execute(
                "insert into public.messages (conversation_id, user_id, role, content, status)"
                " values (%s, %s, 'user', %s, 'done')",
                (writer["conversation_id"], writer["user_id"], content),
            )
            committed = time.perf_counter()
            arrivals = await asyncio.wait_for(asyncio.gather(*waits), DEADLINE_SECONDS)
            if sample >= job["warmup"]:
                first_ms.append((min(arrivals) - committed) * 1000)
                last_ms.append((max(arrivals) - committed) * 1000)
    for socket in sockets:
        await socket.close()
    return {"first_ms": first_ms, "last_ms": last_ms}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run(json.load(sys.stdin)))))
