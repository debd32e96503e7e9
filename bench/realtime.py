"""`python -m bench.realtime`: the Realtime stand-in's figures, part of `make bench`.

1. Commit to frame: a message is committed, and the time to the `postgres_changes` frame on a
   subscriber's socket is taken in the subscribers' own process (bench/realtime_subscribers.py),
   one message at a time, with
   - 1 subscriber (the conversation's owner, filtered on the conversation, as the chat frontend),
   - 100 subscribers of 100 different users, each on every `messages` insert: RLS decides for
     each of them, and only the owner's frame is expected (the others must see nothing),
   - 100 subscribers of the owner (100 open tabs): one RLS check, 100 frames; first and last.
2. The per-subscriber RLS check: `Authorizer.rows_visible` timed directly for 1, 10 and 100
   distinct identities on the same row; the slope is the cost of one more subscriber.

Writes bench/results/realtime.json and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from bench import machine
from bench.stats import summarize
from devstack.keys import JwtKeys
from devstack.migrate import prepare_database
from devstack.postgres import LocalPostgres
from devstack.realtime.authorization import Authorizer
from devstack.realtime.tokens import Identity
from devstack.service_process import REPO_ROOT
from devstack.serving import free_port
from devstack.stack import LocalStack, StackConfig


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.realtime", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: few samples")
    parser.add_argument("--output-dir", type=Path, default=REPO_ROOT / "bench" / "results")
    # `make bench BENCH_ARGS=...` passes the main benchmark's options too: ignore those.
    known, _ = parser.parse_known_args(argv)
    return known


def make_users(conn: psycopg.Connection[Any], keys: JwtKeys, count: int) -> list[dict[str, str]]:
    users = []
    now = int(time.time())
    for _ in range(count):
        user_id = str(uuid.uuid4())
        conn.execute("insert into auth.users (id, aud, role, email) values (%s, 'authenticated', 'authenticated', %s)",
                     (user_id, f"{user_id}@bench.test"))
        row = conn.execute("insert into public.conversations (user_id) values (%s) returning id", (user_id,)).fetchone()
        assert row is not None
        token = keys.sign_user_token({"sub": user_id, "role": "authenticated", "aud": "authenticated", "iat": now,
                                      "exp": now + 7200, "iss": keys.issuer})
        users.append({"user_id": user_id, "conversation_id": str(row[0]), "token": token})
    return users


def commit_to_frame(stack: LocalStack, subscribers: list[dict[str, Any]], writer: dict[str, str], wait_for: list[int],
                    samples: int) -> dict[str, Any]:
    assert stack.keys is not None
    job = {
        "realtime_url": stack.realtime_url, "api_key": stack.keys.api_key("anon"), "database_url": stack.database_url,
        "subscribers": subscribers, "writer": writer, "wait_for": wait_for, "samples": samples, "warmup": 10,
    }
    completed = subprocess.run([sys.executable, "-m", "bench.realtime_subscribers"], input=json.dumps(job),
                               capture_output=True, text=True, cwd=REPO_ROOT, timeout=600, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"subscribers failed: {completed.stderr[-3000:]}")
    result = json.loads(completed.stdout)
    return {"subscribers": len(subscribers), "first": summarize(result["first_ms"]), "last": summarize(result["last_ms"])}


async def rls_check_cost(database_url: str, users: list[dict[str, str]], rounds: int) -> dict[str, Any]:
    """Milliseconds per rows_visible call with 1, 10 and 100 identities, and the cost per identity."""
    pool = AsyncConnectionPool(database_url, min_size=1, max_size=2, open=False)
    await pool.open(wait=True)
    try:
        authorizer = Authorizer(pool)
        owner = users[0]
        async with pool.connection() as conn:
            cursor = await conn.execute(
                "insert into public.messages (conversation_id, user_id, role, content, status)"
                " values (%s, %s, 'user', 'rls probe', 'done') returning id, 'public.messages'::regclass::oid",
                (owner["conversation_id"], owner["user_id"]))
            row = await cursor.fetchone()
            assert row is not None
            await conn.commit()
        message_id, relation_oid = str(row[0]), int(row[1])
        view = (await authorizer.table_views(relation_oid, ["authenticated"]))["authenticated"]
        identities = [Identity(u["token"], {"sub": u["user_id"], "role": "authenticated"}) for u in users]
        timings: dict[int, float] = {}
        for size in (1, 10, 100):
            chosen = identities[:size]
            await authorizer.rows_visible(view, {"id": message_id}, chosen)  # warm up plans and the pool
            started = time.perf_counter()
            for _ in range(rounds):
                visible = await authorizer.rows_visible(view, {"id": message_id}, chosen)
            timings[size] = (time.perf_counter() - started) * 1000 / rounds
            assert visible == [True] + [False] * (size - 1), "RLS must admit the owner only"
        per_identity = (timings[100] - timings[1]) / 99
        return {"ms_per_call": {str(k): round(v, 3) for k, v in timings.items()},
                "ms_per_extra_subscriber": round(per_identity, 3), "rounds": rounds}
    finally:
        await pool.close()


def table(results: dict[str, Any]) -> str:
    lines = ["Realtime stand-in: commit to frame on a subscriber's socket (ms)",
             f"{'scenario':58} {'n':>5} {'p50':>7} {'p99':>7} {'max':>7}"]
    for name, figure in results["commit_to_frame"].items():
        for edge in ("first", "last") if name == "100 subscribers of the owner" else ("first",):
            label = f"{name} ({edge} frame)" if name == "100 subscribers of the owner" else name
            stats = figure[edge]
            lines.append(f"{label:58} {stats['n']:>5} {stats['p50']:>7.2f} {stats['p99']:>7.2f} {stats['max']:>7.2f}")
    rls = results["rls_check"]
    lines.append("")
    lines.append("Per-subscriber RLS check (one round trip, pipelined): ms per call for 1 / 10 / 100 identities: "
                 + " / ".join(f"{v:.3f}" for v in rls["ms_per_call"].values())
                 + f"; {rls['ms_per_extra_subscriber']:.3f} ms per extra subscriber")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    samples, rounds = (30, 20) if args.quick else (300, 200)
    results: dict[str, Any] = {"machine": machine.describe(), "samples": samples}
    with tempfile.TemporaryDirectory(prefix="bench-realtime-") as directory:
        folder = Path(directory)
        postgres = LocalPostgres(folder / "postgres" / "data", free_port())
        try:
            prepare_database(postgres.start())
            stack = LocalStack(StackConfig(state_dir=folder, api_port=free_port(), model_port=free_port(),
                                           database_url=postgres.superuser_url, trust_local_logins=True,
                                           webhook_url="http://127.0.0.1:9/unused")).start()
            try:
                assert stack.keys is not None
                with psycopg.connect(stack.database_url, autocommit=True) as conn:
                    conn.execute("delete from private.webhook_config")  # no webhook: only Realtime is measured
                    users = make_users(conn, stack.keys, 100)
                owner = users[0]
                writer = {"conversation_id": owner["conversation_id"], "user_id": owner["user_id"]}
                mine = f"conversation_id=eq.{owner['conversation_id']}"
                scenarios = {
                    "1 subscriber (the owner, filtered)": ([{"token": owner["token"], "filter": mine}], [0]),
                    "100 subscribers, 100 users, RLS decides (owner's frame)": ([{"token": u["token"]} for u in users], [0]),
                    "100 subscribers of the owner": ([{"token": owner["token"], "filter": mine}] * 100, list(range(100))),
                }
                results["commit_to_frame"] = {}
                for name, (subscribers, wait_for) in scenarios.items():
                    print(f"realtime: {name}", flush=True)
                    results["commit_to_frame"][name] = commit_to_frame(stack, subscribers, writer, wait_for, samples)
                print("realtime: RLS check cost", flush=True)
                results["rls_check"] = asyncio.run(rls_check_cost(stack.database_url, users, rounds))
            finally:
                stack.stop()
        finally:
            postgres.stop()
    print()
    print(table(results))
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "realtime.json").write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.output_dir / 'realtime.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
