"""`python -m bench.streaming`: the streaming figures, part of `make bench`, all in one run.

1. Time to first token seen by a Realtime subscriber (from the user message's commit to the
   first `reply_delta` on its private channel) and by an SSE caller (from the same commit, and
   from sending the POST, to the first `delta` event), minus the model's own time to first token:
   p50 and p99 at 1, 16 and 64 concurrent streams. Subscribers and callers run in processes of
   their own.
2. Broadcasts per reply at the default STREAM_BROADCAST_INTERVAL_MS: a 500-token reply at 50
   tokens/s, 16 at once.
3. Service CPU (gunicorn master + workers) per reply of 500 tokens, streamed against whole, and
   the client-side cost of reading a 500-chunk stream through the SDK (typed chunks, and plain
   dicts) against the adapter (aiohttp on an event loop, plain dicts).
4. Capacity: the most concurrent streams one instance holds with a model of 1 s to first token
   and 50 tokens/s before the subscriber-side p99 overhead passes 100 ms or anything fails; then
   the same with the service pinned to one core and everything else on the other, which also
   gives the service's CPU per streamed token at each step.

The machine may be shared: the figures are compared within this run, and the load average at
the start is recorded next to them. Writes bench/results/streaming.json and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import psutil
import psycopg
from openai import Stream
from openai.types.chat import ChatCompletionChunk

from adapters.http_session import LoopSession
from adapters.model import OpenAIChatModel
from bench import machine
from bench.cpu import tree_seconds
from bench.harness import BenchEnvironment, bench_environment
from bench.realtime import make_users
from bench.stats import ratio, summarize
from devstack.service_process import REPO_ROOT
from devstack.serving import free_port

MODEL_TTFT_MS = 300.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.streaming", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: few samples")
    parser.add_argument("--output-dir", type=Path, default=REPO_ROOT / "bench" / "results")
    known, _ = parser.parse_known_args(argv)
    return known


def words(count: int) -> str:
    return " ".join(f"t{index}" for index in range(count))


def set_pace(env: BenchEnvironment, first_token_ms: float, tokens_per_second: float) -> None:
    assert env.stack.fake_model is not None
    httpx.post(f"{env.stack.fake_model.url}/_fake/config",
               json={"latency_ms": first_token_ms, "tokens_per_second": tokens_per_second}).raise_for_status()


def subscribers(env: BenchEnvironment, users: list[dict[str, str]], rounds: int, content: str,
                spread_seconds: float = 0.0) -> list[dict[str, Any]]:
    assert env.stack.keys is not None
    job = {"realtime_url": env.stack.realtime_url, "api_key": env.stack.keys.api_key("anon"),
           "database_url": env.database_url, "users": users, "rounds": rounds, "content": content,
           "spread_seconds": spread_seconds}
    completed = subprocess.run([sys.executable, "-m", "bench.streaming_subscribers"], input=json.dumps(job),
                               capture_output=True, text=True, cwd=REPO_ROOT, timeout=900, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"subscribers failed: {completed.stderr[-3000:]}")
    return list(json.loads(completed.stdout)["results"])


def sse_round(env: BenchEnvironment, users: list[dict[str, str]], content: str) -> list[dict[str, Any]]:
    """One POST per user at once from a separate process; each result gains `commit_ms`, the time
    from its message's commit (`created_at`) to its first delta: the interval Realtime is timed on."""
    job = {"url": env.service.url, "users": users, "content": content}
    completed = subprocess.run([sys.executable, "-m", "bench.streaming_sse_callers"], input=json.dumps(job),
                               capture_output=True, text=True, cwd=REPO_ROOT, timeout=900, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"SSE callers failed: {completed.stderr[-3000:]}")
    results: list[dict[str, Any]] = json.loads(completed.stdout)["results"]
    ids = [r["message_id"] for r in results if "message_id" in r]
    with psycopg.connect(env.database_url, autocommit=True) as conn:
        rows = conn.execute("select id::text, extract(epoch from created_at)::float8 from public.messages"
                            " where id = any(%s::uuid[])", (ids,)).fetchall()
    created: dict[str, float] = {str(message_id): float(epoch) for message_id, epoch in rows}
    for result in results:
        if result.get("message_id") in created:
            result["commit_ms"] = (result["first_wall"] - created[result["message_id"]]) * 1000
    return results


def first_token(env: BenchEnvironment, users: list[dict[str, str]], quick: bool) -> dict[str, Any]:
    set_pace(env, MODEL_TTFT_MS, 100)
    content = words(20)
    figures: dict[str, Any] = {"model_first_token_ms": MODEL_TTFT_MS, "reply_tokens": 21, "model_tokens_per_second": 100}
    for streams, rounds in ((1, 5 if quick else 30), (16, 1 if quick else 6), (64, 1 if quick else 3)):
        group = users[:streams]
        realtime = subscribers(env, group, rounds, content)
        sse: list[dict[str, Any]] = []
        for _ in range(rounds):
            sse += sse_round(env, group, content)
        figures[str(streams)] = {
            "realtime": summarize([r["first_ms"] for r in realtime if "first_ms" in r], MODEL_TTFT_MS),
            "realtime_failed": sum("failed" in r for r in realtime),
            # From the message's commit, as Realtime is timed: the stream's own path.
            "sse": summarize([r["commit_ms"] for r in sse if "commit_ms" in r], MODEL_TTFT_MS),
            # From sending the POST: what the caller waits, the insert as the caller included.
            "sse_from_post": summarize([r["post_ms"] for r in sse if "post_ms" in r], MODEL_TTFT_MS),
            "sse_failed": sum("failed" in r for r in sse),
        }
        print(f"first token, {streams} streams: {figures[str(streams)]}", flush=True)
    return figures


def broadcasts_per_reply(env: BenchEnvironment, users: list[dict[str, str]], quick: bool) -> dict[str, Any]:
    tokens, pace = (100, 50) if quick else (500, 50)
    set_pace(env, 0, pace)
    results = subscribers(env, users[:16], 1, words(tokens - 1))
    deltas = [r["deltas"] for r in results if "deltas" in r]
    return {"reply_tokens": tokens, "tokens_per_second": pace, "streams": 16, "replies": len(deltas),
            "deltas_per_reply": summarize([float(d) for d in deltas]), "failed": sum("failed" in r for r in results),
            "seconds_per_reply": tokens / pace}


def service_cpu_per_reply(env: BenchEnvironment, users: list[dict[str, str]], replies: int) -> dict[str, Any]:
    """Service CPU per answered webhook message of 500 tokens (2 s at 250 tokens/s), 8 at once."""
    set_pace(env, 0, 250)
    service_pid = env.service.process.pid if env.service.process else None
    before, _ = tree_seconds(service_pid)
    started = time.perf_counter()
    results: list[dict[str, Any]] = []
    for start in range(0, replies, 8):
        results += commit_and_wait(env, users[start % len(users):start % len(users) + 8], words(499))
    after, _ = tree_seconds(service_pid)
    answered = sum(1 for r in results if not r.get("failed"))
    return {"replies": answered, "failed": len(results) - answered, "cpu_seconds": round(after - before, 3),
            "cpu_ms_per_reply": round((after - before) * 1000 / max(answered, 1), 2),
            "wall_seconds": round(time.perf_counter() - started, 1)}


def commit_and_wait(env: BenchEnvironment, users: list[dict[str, str]], content: str) -> list[dict[str, Any]]:
    """Commit one message per user and wait until each is settled (works streamed or not)."""
    with psycopg.connect(env.database_url, autocommit=True) as conn:
        ids = [str(conn.execute(
            "insert into public.messages (conversation_id, user_id, content) values (%s, %s, %s) returning id",
            (user["conversation_id"], user["user_id"], content)).fetchone()[0]) for user in users]  # type: ignore[index]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            rows = conn.execute("select id::text, status from public.messages where id = any(%s::uuid[])", (ids,)).fetchall()
            if all(status in ("done", "failed") for _, status in rows):
                return [{"failed": status != "done"} for _, status in rows]
            time.sleep(0.05)
    return [{"failed": True} for _ in ids]


def chunk_parsing(env: BenchEnvironment, streams: int) -> dict[str, Any]:
    """Client CPU to read a 500-chunk stream: the SDK's typed chunks and its plain dicts against
    the adapter (aiohttp, lean parsing) on an event loop."""
    assert env.stack.fake_model is not None
    set_pace(env, 0, 0)
    base_url = f"{env.stack.fake_model.url}/v1"
    client = openai.OpenAI(api_key="bench", base_url=base_url, max_retries=0)
    body = {"model": "fake-model", "messages": [{"role": "user", "content": words(499)}], "stream": True,
            "stream_options": {"include_usage": True}}
    figures = {}
    for name, cast_to in (("typed", ChatCompletionChunk), ("plain_dict", object)):
        started = time.process_time()
        for _ in range(streams):
            for _chunk in client.post("/chat/completions", body=body, cast_to=cast_to, stream=True,
                                      stream_cls=Stream[cast_to]):  # type: ignore[valid-type]
                pass
        figures[name] = round((time.process_time() - started) * 1000 / streams, 2)
    client.close()
    figures["adapter_lean"] = asyncio.run(adapter_cpu_ms_per_stream(base_url, body["messages"], streams))  # type: ignore[arg-type]
    return {"streams": streams, "chunks": 503, "client_cpu_ms_per_stream": figures,
            "typed_over_lean": ratio(figures["typed"], figures["adapter_lean"]),
            "sdk_plain_over_lean": ratio(figures["plain_dict"], figures["adapter_lean"])}


async def adapter_cpu_ms_per_stream(base_url: str, messages: list[dict[str, str]], streams: int) -> float:
    session = LoopSession()
    model = OpenAIChatModel("bench", base_url, 60, session, max_attempts=1, retry_initial_seconds=0, retry_max_seconds=0)
    try:
        started = time.process_time()
        for _ in range(streams):
            async for _piece in await model.stream(messages, "fake-model"):
                pass
        return round((time.process_time() - started) * 1000 / streams, 2)
    finally:
        await session.close()


def capacity(env: BenchEnvironment, users: list[dict[str, str]], quick: bool) -> dict[str, Any]:
    set_pace(env, 1000, 50)
    steps = []
    held = 0
    for streams in ((2, 8) if quick else (1, 2, 4, 8, 16, 32, 64, 128, 256)):
        if streams > len(users):
            break
        results = subscribers(env, users[:streams], 1, words(49))
        latencies = [r["first_ms"] for r in results if "first_ms" in r]
        failed = sum("failed" in r for r in results)
        figure = summarize(latencies, 1000.0)
        steps.append({"streams": streams, "overhead": figure, "failed": failed})
        print(f"capacity, {streams} streams: p99 {figure['p99']} ms, {failed} failed", flush=True)
        if failed or figure["p99"] > 100:
            break
        held = streams
    return {"model_first_token_ms": 1000, "tokens_per_second": 50, "reply_tokens": 50, "steps": steps,
            "held_streams": held}


@contextlib.contextmanager
def own_process_fake_model() -> Iterator[str]:
    """The fake model in a process of its own (the stack's runs in this process's threads, where it
    would share one interpreter lock with the gateway and Realtime at hundreds of streams)."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "devstack.fake_openai", "--port", str(port)], cwd=REPO_ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{url}/_fake/requests", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(10)


def pin_tree(pid: int, cores: set[int]) -> None:
    root = psutil.Process(pid)
    for process in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.cpu_affinity(sorted(cores))


def core_busy(before: list[Any], after: list[Any], wall: float) -> dict[int, float]:
    """Each core's share of the wall time spent not idle."""
    return {core: round(1 - (getattr(a, "idle", 0) - getattr(b, "idle", 0)) / max(wall, 1e-9), 3)
            for core, (b, a) in enumerate(zip(before, after, strict=False))}


def pinned_capacity(quick: bool) -> dict[str, Any]:
    """Capacity with the service alone on core 0 (one gunicorn worker, as on a one-CPU machine)
    and everything else (Postgres, stand-ins, fake model, subscribers, this process) on core 1:
    the streams one service core holds, and its CPU per streamed token, free of the rig's share.
    Each step's messages arrive spread over one reply's length, so `streams` replies are in
    flight together in a steady state (the unpinned run above measures bursts)."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return {"skipped": "needs two cores"}
    service_core, rig_core = {cores[0]}, {cores[1]}
    own = os.sched_getaffinity(0)
    os.sched_setaffinity(0, rig_core)  # the stack, Postgres and the subscribers inherit it
    try:
        with own_process_fake_model() as model_url, bench_environment(
            WEB_CONCURRENCY="1", OPENAI_BASE_URL=f"{model_url}/v1"
        ) as env:
            assert env.service.process is not None and env.stack.keys is not None
            pin_tree(env.service.process.pid, service_core)
            httpx.post(f"{model_url}/_fake/config", json={"latency_ms": 1000, "tokens_per_second": 50}).raise_for_status()
            with psycopg.connect(env.database_url, autocommit=True) as conn:
                users = make_users(conn, env.stack.keys, 32 if quick else 320)
            steps = []
            held = 0
            for streams in ((8, 32) if quick else (16, 64, 96, 128, 192, 256, 320)):
                before, _ = tree_seconds(env.service.process.pid)
                cores_before, wall_before = psutil.cpu_times(percpu=True), time.monotonic()
                # Arrivals spread over one reply's length (1 s to the first token, 49 more at 50/s):
                # `streams` replies in flight at once, as a steady state, not a burst.
                results = subscribers(env, users[:streams], 1, words(49), spread_seconds=2.0)
                after, _ = tree_seconds(env.service.process.pid)
                wall = time.monotonic() - wall_before
                busy = core_busy(cores_before, psutil.cpu_times(percpu=True), wall)
                latencies = [r["first_ms"] for r in results if "first_ms" in r]
                failed = sum("failed" in r for r in results)
                figure = summarize(latencies, 1000.0)
                tokens = sum(r.get("tokens", 50) for r in results if "first_ms" in r)
                steps.append({"streams": streams, "overhead": figure, "failed": failed,
                              "service_cpu_seconds": round(after - before, 3),
                              "service_cpu_us_per_token": round((after - before) * 1e6 / max(tokens, 1), 1),
                              "service_cpu_ms_per_reply": round((after - before) * 1000 / max(len(latencies), 1), 2),
                              # The service's own CPU over the step's wall time: its share of its core.
                              "service_core_share": round((after - before) / max(wall, 1e-9), 3),
                              "rig_core_busy": busy[cores[1]]})
                print(f"pinned capacity, {streams} streams: p99 {figure['p99']} ms, {failed} failed, "
                      f"{steps[-1]['service_cpu_us_per_token']} us/token, "
                      f"service {steps[-1]['service_core_share']:.0%} of its core, "
                      f"rig core {busy[cores[1]]:.0%}", flush=True)
                if failed or figure["p99"] > 100:
                    break
                held = streams
    finally:
        os.sched_setaffinity(0, own)
    return {"model_first_token_ms": 1000, "tokens_per_second": 50, "reply_tokens": 50, "service_core": cores[0],
            "steps": steps, "held_streams": held}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.time()
    results: dict[str, Any] = {"machine": machine.describe(), "load_average_at_start": os.getloadavg()}
    with bench_environment() as env:
        assert env.stack.keys is not None
        with psycopg.connect(env.database_url, autocommit=True) as conn:
            users = make_users(conn, env.stack.keys, 64 if args.quick else 256)
        results["first_token"] = first_token(env, users, args.quick)
        results["broadcasts"] = broadcasts_per_reply(env, users, args.quick)
        results["capacity"] = capacity(env, users, args.quick)
        results["cpu_streamed"] = service_cpu_per_reply(env, users, 16 if args.quick else 48)
        results["chunk_parsing"] = chunk_parsing(env, 5 if args.quick else 40)
        results["interval_ms"] = int(env.env.get("STREAM_BROADCAST_INTERVAL_MS", "150"))
    results["pinned_capacity"] = pinned_capacity(args.quick)
    with bench_environment(STREAM_REPLIES="false") as env:
        assert env.stack.keys is not None
        with psycopg.connect(env.database_url, autocommit=True) as conn:
            users = make_users(conn, env.stack.keys, 8)
        # Whole replies take a fraction of a second each: more of them, for a CPU figure above the noise.
        results["cpu_whole"] = service_cpu_per_reply(env, users, 16 if args.quick else 240)
    results["cpu_streamed_over_whole"] = ratio(results["cpu_streamed"]["cpu_ms_per_reply"],
                                               results["cpu_whole"]["cpu_ms_per_reply"])
    results["cpu_us_per_streamed_token"] = round(results["cpu_streamed"]["cpu_ms_per_reply"] * 1000 / 500, 1)
    results["extra_cpu_us_per_streamed_token"] = round(
        (results["cpu_streamed"]["cpu_ms_per_reply"] - results["cpu_whole"]["cpu_ms_per_reply"]) * 1000 / 500, 1)
    results["seconds"] = round(time.time() - started, 1)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "streaming.json").write_text(json.dumps(results, indent=2))
    print(json.dumps({k: v for k, v in results.items() if k != "machine"}, indent=2))


if __name__ == "__main__":
    main()
