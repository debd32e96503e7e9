"""`python -m bench.streaming_subscribers`: the frontends of the streaming figures, in a process of
their own (so their Python is not timed as the service's or the stand-ins').

Reads a job on stdin: `{"realtime_url", "api_key", "database_url", "users": [{"token",
"conversation_id", "user_id"}], "rounds", "content"}`, and optionally `spread_seconds` (the
commits of a round spread evenly over that time instead of all at once). Opens one socket per user (protocol 1.0.0
JSON frames), joins the private channel `chat:<conversation_id>`, then per round commits one
message in every conversation at once and times, for each, from its commit to the first
`reply_delta`, counting the deltas until `reply_done`. Prints the results as JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import psycopg
from websockets.asyncio.client import ClientConnection, connect

DEADLINE_SECONDS = 120.0


async def join(url: str, user: dict[str, str]) -> ClientConnection:
    socket = await connect(url, max_queue=None)
    topic = f"realtime:chat:{user['conversation_id']}"
    config = {"broadcast": {"self": False, "ack": False}, "presence": {"key": ""}, "postgres_changes": [], "private": True}
    await socket.send(json.dumps({"topic": topic, "event": "phx_join", "ref": "1", "join_ref": "1",
                                  "payload": {"config": config, "access_token": user["token"]}}))
    while True:
        frame = json.loads(await socket.recv())
        if frame.get("event") == "phx_reply":
            if frame["payload"]["status"] != "ok":
                raise RuntimeError(f"join refused: {frame['payload']}")
            return socket


async def follow(socket: ClientConnection, message_ids: asyncio.Future[str]) -> dict[str, Any]:
    """First delta's arrival and the number of deltas of the reply to this socket's next message."""
    first: float | None = None
    deltas = 0
    pending: list[dict[str, Any]] = []
    message_id: str | None = None
    while True:
        frame = json.loads(await socket.recv())
        if frame.get("event") != "broadcast":
            continue
        event = frame["payload"]
        if message_id is None and message_ids.done():
            message_id = message_ids.result()
        pending.append({"at": time.perf_counter(), **event})
        if message_id is None:
            continue
        for item in pending:
            if item["payload"]["message_id"] != message_id:
                continue
            if item["event"] == "reply_delta":
                deltas += 1
                first = first if first is not None else item["at"]
            elif item["event"] in ("reply_done", "reply_failed", "reply_stopped"):
                return {"first": first, "deltas": deltas, "end": item["event"], "done": item["at"]}
        pending.clear()


async def run(job: dict[str, Any]) -> dict[str, Any]:
    url = f"{job['realtime_url']}/websocket?apikey={job['api_key']}&vsn=1.0.0"
    sockets = await asyncio.gather(*(join(url, user) for user in job["users"]))
    results: list[dict[str, Any]] = []
    async with await psycopg.AsyncConnection.connect(job["database_url"], autocommit=True) as conn:
        for _ in range(job["rounds"]):
            ids: list[asyncio.Future[str]] = [asyncio.get_running_loop().create_future() for _ in sockets]
            followers = [asyncio.create_task(follow(socket, ids[i])) for i, socket in enumerate(sockets)]
            committed: list[float] = []
            spread = float(job.get("spread_seconds", 0)) / max(len(job["users"]), 1)
            for index, user in enumerate(job["users"]):
                if spread and index:
                    await asyncio.sleep(spread)  # arrivals spread evenly: the streams overlap in a steady state
                row = await (await conn.execute(
                    "insert into public.messages (conversation_id, user_id, content) values (%s, %s, %s) returning id",
                    (user["conversation_id"], user["user_id"], job["content"]))).fetchone()
                committed.append(time.perf_counter())
                assert row is not None
                ids[index].set_result(str(row[0]))
            done = await asyncio.wait_for(asyncio.gather(*followers, return_exceptions=True), DEADLINE_SECONDS)
            for index, outcome in enumerate(done):
                if isinstance(outcome, BaseException) or outcome["first"] is None or outcome["end"] != "reply_done":
                    results.append({"failed": repr(outcome)})
                else:
                    results.append({"first_ms": (outcome["first"] - committed[index]) * 1000, "deltas": outcome["deltas"],
                                    "total_ms": (outcome["done"] - committed[index]) * 1000})
    for socket in sockets:
        await socket.close()
    return {"results": results}


def main() -> None:
    job = json.loads(sys.stdin.read())
    print(json.dumps(asyncio.run(run(job))))


if __name__ == "__main__":
    main()
