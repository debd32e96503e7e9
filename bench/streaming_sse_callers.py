"""`python -m bench.streaming_sse_callers`: the SSE callers of the streaming figures, in a process of
their own (as the Realtime subscribers are), so their Python shares no interpreter lock with the
stand-ins the bench process hosts.

Reads a job on stdin: `{"url", "users": [{"token", "conversation_id"}], "content"}`. Sends one
`POST /api/chat/<conversation_id>` with `Accept: text/event-stream` per user, all at once, and
prints, for each, the milliseconds from sending it to its first `delta` event, the wall-clock time
of that event and the message id its `done` event names (so the bench can time the same stream
from the message's commit, as it times Realtime's).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import aiohttp

DEADLINE_SECONDS = 120.0


async def one(session: aiohttp.ClientSession, url: str, user: dict[str, str], content: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {user['token']}", "Accept": "text/event-stream"}
    started = time.perf_counter()
    first: float | None = None
    first_wall: float | None = None
    event = None
    async with session.post(f"{url}/api/chat/{user['conversation_id']}", json={"message": content},
                            headers=headers) as response:
        if response.status != 200:
            return {"failed": f"status {response.status}"}
        async for raw in response.content:
            line = raw.decode().rstrip("\r\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data:") and event == "delta" and first is None:
                first, first_wall = time.perf_counter(), time.time()
            elif line.startswith("data:") and event == "done":
                if first is None or first_wall is None:
                    return {"failed": "no delta"}
                return {"post_ms": (first - started) * 1000, "first_wall": first_wall,
                        "message_id": json.loads(line[5:])["message_id"]}
            elif event == "error":
                return {"failed": "error event"}
    return {"failed": "ended without done"}


async def run(job: dict[str, Any]) -> list[dict[str, Any]]:
    timeout = aiohttp.ClientTimeout(total=DEADLINE_SECONDS)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:
        outcomes = await asyncio.gather(*(one(session, job["url"], user, job["content"]) for user in job["users"]),
                                        return_exceptions=True)
    return [o if isinstance(o, dict) else {"failed": repr(o)} for o in outcomes]


def main() -> None:
    job = json.loads(sys.stdin.read())
    print(json.dumps({"results": asyncio.run(run(job))}))


if __name__ == "__main__":
    main()
