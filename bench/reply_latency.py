"""Commit-to-commit reply latency: from the user row's commit to the reply row's commit, through
the trigger, the pg_net stand-in, the webhook, the pipeline and the fake model.

The user row is inserted as `authenticated` with real JWT claims (the RLS path a frontend takes);
its commit time is the wall clock when COMMIT returns. The reply's commit time is its created_at,
the start of complete_message's one-statement transaction (same host clock, well under 1 ms
before its commit).

    .venv/bin/python -m bench.reply_latency [--messages 100] [--model-latency-ms 0]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid

import psycopg

from bench.harness import bench_environment


def measure(database_url: str, messages: int) -> list[float]:
    latencies = []
    with psycopg.connect(database_url, autocommit=True) as admin, psycopg.connect(database_url) as user:
        user_id = str(uuid.uuid4())
        admin.execute("insert into auth.users (id, aud, role, email) values (%s, 'authenticated', 'authenticated', %s)",
                      (user_id, f"{user_id}@bench.test"))
        conversation = admin.execute("insert into public.conversations (user_id) values (%s) returning id",
                                     (user_id,)).fetchone()[0]
        claims = json.dumps({"sub": user_id, "role": "authenticated", "aud": "authenticated"})
        for n in range(messages):
            user.execute("set local role authenticated")
            user.execute("select set_config('request.jwt.claims', %s, true)", (claims,))
            message_id = user.execute(
                "insert into public.messages (conversation_id, content) values (%s, %s) returning id",
                (conversation, f"benchmark message {n}"),
            ).fetchone()[0]
            user.commit()
            committed = time.time()
            latencies.append(wait_for_reply(admin, message_id) - committed)
    return latencies


def wait_for_reply(admin: psycopg.Connection, message_id: uuid.UUID, deadline_seconds: float = 30) -> float:
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        row = admin.execute("select extract(epoch from created_at) from public.messages where reply_to = %s",
                            (message_id,)).fetchone()
        if row:
            return float(row[0])
        time.sleep(0.001)
    raise TimeoutError(f"no reply to {message_id} within {deadline_seconds} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--model-latency-ms", type=float, default=0)
    args = parser.parse_args()
    with bench_environment() as environment:
        environment.set_model_latency(args.model_latency_ms)
        measure(environment.stack.database_url, 5)  # warm-up: connections, imports
        latencies = sorted(seconds * 1000 for seconds in measure(environment.stack.database_url, args.messages))
    model = args.model_latency_ms
    print(f"reply latency, user commit -> reply commit, {args.messages} sequential messages, model {model:.0f} ms")
    print(f"  median {statistics.median(latencies):7.1f} ms   (overhead {statistics.median(latencies) - model:6.1f} ms)")
    print(f"  p95    {latencies[int(0.95 * (len(latencies) - 1))]:7.1f} ms")
    print(f"  worst  {latencies[-1]:7.1f} ms   (overhead {latencies[-1] - model:6.1f} ms)")


if __name__ == "__main__":
    main()
