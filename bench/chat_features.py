"""`python -m bench.chat_features`: what regenerate, titles and search cost, part of `make bench`.

1. Service CPU (the gunicorn tree's user + system time, master and workers) per regenerate
   (POST /api/chat/<id>/messages/<id>/regenerate) against per plain send (POST /api/chat/<id>),
   and each request's wall-clock p50; one caller at a time, the fake model at 0 ms, the service's
   default reply mode, titles off. Blocks of sends and of regenerates alternate over the same
   conversations; each regenerate asks again for its conversation's newest message, as a user
   regenerates the last reply, so both kinds see the same context.
2. Service CPU per title: first turns (POST /api/chat/<id>) in new, untitled conversations on a
   service with GENERATE_TITLES on against one with it off, on the same stack, alternated; each
   block's window closes once every title is written (on) or at once (off). The difference per
   conversation is the title's cost: its claim, the model call, storing it.
3. Search latency on one user's messages (bench/search_latency.py).

The machine may be shared: the sides are alternated within one run and the busy share of other
processes is recorded. Writes bench/results/chat_features.json and prints a table.

    .venv/bin/python -m bench.chat_features            # a few minutes on 2 cores
    .venv/bin/python -m bench.chat_features --quick    # a smoke run, well under a minute
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench import machine, search_latency
from bench.cpu import machine_busy_seconds, tree_seconds
from bench.fixtures import VirtualUser, create_virtual_users
from bench.harness import BenchEnvironment, bench_environment
from bench.stats import percentile
from devstack.service_process import REPO_ROOT, ServiceProcess
from devstack.serving import free_port
from server.settings import load_settings

MESSAGE = "What would a good name for a small bakery by the sea be? Three ideas, please."
CONVERSATIONS = 16
TITLE_WAIT_SECONDS = 30.0


@dataclass(frozen=True)
class Counts:
    requests_per_kind: int  # sends, and regenerates (part 1)
    repeats: int  # alternations of the two kinds, and of titles on and off
    first_turns: int  # per side (part 2)
    search_messages: int
    search_calls: int


FULL = Counts(requests_per_kind=300, repeats=3, first_turns=150, search_messages=100_000, search_calls=50)
QUICK = Counts(requests_per_kind=24, repeats=2, first_turns=16, search_messages=10_000, search_calls=10)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.chat_features", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: small counts, 10,000 messages to search")
    parser.add_argument("--output-dir", type=Path, default=REPO_ROOT / "bench" / "results")
    known, _ = parser.parse_known_args(argv)
    return known


class Window:
    """The service's CPU seconds and the machine's other processes' between enter and exit."""

    def __init__(self, service: ServiceProcess) -> None:
        self.pid = service.process.pid if service.process else None

    def __enter__(self) -> Window:
        self.service_before, _ = tree_seconds(self.pid)
        self.machine_before, self.wall_before = machine_busy_seconds(), time.perf_counter()
        return self

    def __exit__(self, *_: object) -> None:
        after = tree_seconds(self.pid)[0]
        self.service_seconds = after - self.service_before
        self.wall_seconds = time.perf_counter() - self.wall_before
        self.machine_seconds = machine_busy_seconds() - self.machine_before


def post(client: httpx.Client, path: str, token: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    response = client.post(path, json=body, headers={"Authorization": f"Bearer {token}"})
    response.raise_for_status()
    answer: dict[str, Any] = response.json()
    if answer.get("status") != "done":
        raise RuntimeError(f"{path}: not answered: {answer}")
    return answer


def timed_block(service: ServiceProcess, count: int, request: Callable[[int], None]) -> dict[str, Any]:
    latencies = []
    with Window(service) as window:
        for index in range(count):
            began = time.perf_counter()
            request(index)
            latencies.append((time.perf_counter() - began) * 1000)
    return {"requests": count, "service_cpu_seconds": round(window.service_seconds, 4),
            "wall_seconds": round(window.wall_seconds, 2), "latencies_ms": latencies,
            "machine_busy_seconds": round(window.machine_seconds, 2)}


def summarize_blocks(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    latencies = [value for block in blocks for value in block["latencies_ms"]]
    requests = sum(block["requests"] for block in blocks)
    return {"requests": requests,
            "service_cpu_ms_per_request": round(sum(b["service_cpu_seconds"] for b in blocks) * 1000 / requests, 2),
            "per_block_service_cpu_ms": [round(b["service_cpu_seconds"] * 1000 / b["requests"], 2) for b in blocks],
            "wall_p50_ms": round(statistics.median(latencies), 2), "wall_p95_ms": round(percentile(latencies, 0.95), 2)}


def busy_share(blocks: list[dict[str, Any]]) -> float:
    """How busy the whole machine was over these windows (every process, ours and others'): near
    1.0 the figures were taken on a saturated machine."""
    cores = os.cpu_count() or 1
    return round(sum(b["machine_busy_seconds"] for b in blocks) / (sum(b["wall_seconds"] for b in blocks) * cores), 3)


def regenerate_against_send(env: BenchEnvironment, counts: Counts) -> dict[str, Any]:
    users = create_virtual_users(env, CONVERSATIONS, "bench: regenerate")
    newest: dict[str, str] = {}
    per_block = -(-counts.requests_per_kind // counts.repeats)
    with httpx.Client(base_url=env.service.url, timeout=60) as client:

        def send(index: int) -> None:
            user = users[index % len(users)]
            answer = post(client, f"/api/chat/{user.conversation_id}", user.token, {"message": f"{MESSAGE} ({index})"})
            newest[user.conversation_id] = answer["message_id"]

        def regenerate(index: int) -> None:
            user = users[index % len(users)]
            path = f"/api/chat/{user.conversation_id}/messages/{newest[user.conversation_id]}/regenerate"
            newest[user.conversation_id] = post(client, path, user.token)["message_id"]

        for index in range(len(users)):  # each conversation's first turn, and one regenerate: the warm-up
            send(index)
            regenerate(index)
        sends, regenerates = [], []
        for _ in range(counts.repeats):
            sends.append(timed_block(env.service, per_block, send))
            regenerates.append(timed_block(env.service, per_block, regenerate))
    result: dict[str, Any] = {"conversations": CONVERSATIONS, "send": summarize_blocks(sends),
              "regenerate": summarize_blocks(regenerates),
              "machine_busy_share": busy_share([*sends, *regenerates])}
    result["regenerate_over_send_cpu"] = round(result["regenerate"]["service_cpu_ms_per_request"]
                                               / result["send"]["service_cpu_ms_per_request"], 3)
    return result


def untitled_conversations(env: BenchEnvironment, count: int) -> list[VirtualUser]:
    """New conversations without a title (create_virtual_users names its), as a frontend starts a chat."""
    users = create_virtual_users(env, count, "bench: titles")
    with psycopg.connect(env.database_url, autocommit=True) as conn:
        conn.execute("update public.conversations set title = null where id = any(%s::uuid[])",
                     ([user.conversation_id for user in users],))
    return users


def titled(env: BenchEnvironment, users: list[VirtualUser]) -> int:
    with psycopg.connect(env.database_url, autocommit=True) as conn:
        row = conn.execute("select count(*) from public.conversations where id = any(%s::uuid[]) and title is not null",
                           ([user.conversation_id for user in users],)).fetchone()
    return int(row[0]) if row else 0


def first_turns(env: BenchEnvironment, service: ServiceProcess, users: list[VirtualUser], titles: bool) -> dict[str, Any]:
    env.stack.configure_webhook(f"{service.url}/webhooks/messages")
    with httpx.Client(base_url=service.url, timeout=60) as client, Window(service) as window:
        for user in users:
            post(client, f"/api/chat/{user.conversation_id}", user.token, {"message": MESSAGE})
        deadline = time.monotonic() + TITLE_WAIT_SECONDS
        while titles and titled(env, users) < len(users) and time.monotonic() < deadline:
            time.sleep(0.02)
    return {"conversations": len(users), "titled": titled(env, users), "service_cpu_seconds": round(window.service_seconds, 4),
            "service_cpu_ms_per_conversation": round(window.service_seconds * 1000 / len(users), 2),
            "wall_seconds": round(window.wall_seconds, 2)}


def title_cost(env: BenchEnvironment, counts: Counts) -> dict[str, Any]:
    with_titles = ServiceProcess({**env.env, "GENERATE_TITLES": "true"}, port=free_port(),
                                 log_path=env.state_dir / "service-titles.log").start()
    try:
        batches = [untitled_conversations(env, counts.first_turns) for _ in range(2 * counts.repeats + 1)]
        first_turns(env, env.service, batches[0][: len(batches[0]) // 2], titles=False)  # warm-up, both sides
        first_turns(env, with_titles, batches[0][len(batches[0]) // 2:], titles=True)
        runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
        for repeat in range(counts.repeats):
            runs["off"].append(first_turns(env, env.service, batches[1 + 2 * repeat], titles=False))
            runs["on"].append(first_turns(env, with_titles, batches[2 + 2 * repeat], titles=True))
    finally:
        with_titles.stop()
        env.stack.configure_webhook(f"{env.service.url}/webhooks/messages")
    per = {side: round(sum(r["service_cpu_seconds"] for r in runs[side]) * 1000
                       / sum(r["conversations"] for r in runs[side]), 2) for side in runs}
    return {"first_turns_per_side": counts.first_turns * counts.repeats,
            "service_cpu_ms_per_first_turn": per, "title_cpu_ms": round(per["on"] - per["off"], 2),
            "per_run_difference_ms": [round(on["service_cpu_ms_per_conversation"] - off["service_cpu_ms_per_conversation"], 2)
                                      for off, on in zip(runs["off"], runs["on"], strict=True)],
            "runs": runs}


def table(results: dict[str, Any]) -> str:
    regen, titles = results["regenerate"], results["titles"]
    lines = [f"service CPU per request (one caller, fake model 0 ms, {results['reply_mode']} replies, titles off):"]
    for kind in ("send", "regenerate"):
        figure = regen[kind]
        lines.append(f"  {kind:<10} {figure['service_cpu_ms_per_request']:6.2f} ms CPU"
                     f" (blocks {figure['per_block_service_cpu_ms']}), wall p50 {figure['wall_p50_ms']:.1f} ms,"
                     f" p95 {figure['wall_p95_ms']:.1f} ms (n={figure['requests']})")
    lines.append(f"  regenerate / send CPU: {regen['regenerate_over_send_cpu']}")
    per = titles["service_cpu_ms_per_first_turn"]
    lines.append(f"title: a first turn costs {per['on']:.2f} ms of service CPU with GENERATE_TITLES on, {per['off']:.2f} ms"
                 f" off: {titles['title_cpu_ms']:+.2f} ms per title (per run {titles['per_run_difference_ms']},"
                 f" {titles['first_turns_per_side']} first turns a side)")
    return "\n".join([*lines, *search_latency.table(results["search"])])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    counts = QUICK if args.quick else FULL
    started = time.monotonic()
    results: dict[str, Any] = {"quick": args.quick, "counts": dataclasses.asdict(counts), "machine": machine.describe()}
    with bench_environment(GENERATE_TITLES="false") as env:
        env.set_model_latency(0)
        settings = load_settings({key.lower(): value for key, value in env.env.items()})
        results["reply_mode"] = "streamed" if settings.stream_replies else "whole"
        print(f"[{time.monotonic() - started:4.0f}s] regenerate against send", flush=True)
        results["regenerate"] = regenerate_against_send(env, counts)
        print(f"[{time.monotonic() - started:4.0f}s] titles", flush=True)
        results["titles"] = title_cost(env, counts)
        print(f"[{time.monotonic() - started:4.0f}s] search", flush=True)
        results["search"] = search_latency.run(env, counts.search_messages, counts.search_calls)
    results["run_seconds"] = round(time.monotonic() - started, 1)
    print()
    print(table(results))
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "chat_features.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.output_dir / 'chat_features.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
