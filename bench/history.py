"""Figure 5, scale with history: how long building a reply's context takes in a conversation of
10, 1,000 and 100,000 messages.

Conversations are seeded straight in SQL with generate_series (alternating user questions and
assistant answers, ~200 characters each, the reply_to links a real conversation has), then the
service's own SQL function fetch_message_context is timed through the gateway with the service role, as
the service calls it. Calls alternate between sizes so drift hits them all alike; the figure is
the median. The same SQL function is also timed directly in Postgres, to tell the database's
share from the HTTP round trip's.

Seeding runs with session_replication_role = replica, the usual bulk-load switch: no webhook for
each seeded row (100,000 deliveries would swamp the service); the rows are consistent anyway.
The table is analyzed afterwards, as autovacuum would after such a load.

A production table holds many conversations, and the planner's choice for the context query
(index scan of one conversation, or a scan of the table) depends on how many rows it expects per
conversation. So the table first gets a background of small conversations, whatever the earlier
figures left in it, and the plan Postgres picks for the largest conversation is recorded.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import psycopg
from supabase import Client

from adapters.message_store import service_client, shared_http_client
from bench.config import BenchConfig
from bench.fixtures import VirtualUser
from bench.harness import BenchEnvironment
from server.settings import load_settings

WARMUP_CALLS = 3

SEED_SQL = """
insert into public.messages (id, conversation_id, user_id, role, content, status, reply_to, created_at)
select md5(%(conversation)s || ':' || n)::uuid, %(conversation)s::uuid, %(user)s::uuid,
       case when n %% 2 = 1 then 'user' else 'assistant' end,
       case when n %% 2 = 1 then 'question ' else 'answer ' end || n || ' ' || repeat('x', 200),
       'done',
       case when n %% 2 = 0 then md5(%(conversation)s || ':' || (n - 1))::uuid end,
       now() - interval '1 day' + n * interval '1 millisecond'
  from generate_series(1, %(size)s - 1) n
"""
BACKGROUND_SQL = """
with owner as (select id from auth.users order by id limit 1),
conversation as (
  insert into public.conversations (user_id, title)
  select owner.id, 'background ' || n from owner, generate_series(1, %(conversations)s) n
  returning id, user_id
)
insert into public.messages (conversation_id, user_id, role, content, status, created_at)
select c.id, c.user_id, 'user', 'background message ' || n, 'done', now() - interval '2 days' + n * interval '1 second'
  from conversation c, generate_series(1, %(messages)s) n
"""
PLAN_SQL = """
explain (format json)
with target as (select m.id, m.conversation_id, m.created_at from public.messages m where m.id = %(message)s::uuid)
select m.id from target t join public.messages m on m.conversation_id = t.conversation_id
 where (m.created_at, m.id) <= (t.created_at, t.id)
   and (m.role = 'assistant' or m.status <> 'failed' or m.id = t.id)
 order by m.created_at desc, m.id desc limit %(limit)s
"""
TARGET_SQL = """
insert into public.messages (conversation_id, user_id, role, content, status)
values (%(conversation)s::uuid, %(user)s::uuid, 'user', 'the newest question', 'done') returning id::text
"""


def seed(conn: psycopg.Connection[Any], user: VirtualUser, size: int) -> str:
    """A conversation of `size` messages; returns the newest (the one a reply would answer)."""
    params = {"conversation": user.conversation_id, "user": user.user_id, "size": size}
    with conn.transaction():
        conn.execute("set local session_replication_role = replica")
        conn.execute(SEED_SQL, params)
        row = conn.execute(TARGET_SQL, params).fetchone()
    assert row is not None
    return str(row[0])


def run(environment: BenchEnvironment, config: BenchConfig, users: list[VirtualUser]) -> dict[str, Any]:
    settings = load_settings({key.lower(): value for key, value in environment.env.items()})
    budget, limit = settings.context_token_budget, settings.context_max_messages
    targets: dict[int, str] = {}
    seeding: dict[int, float] = {}
    with psycopg.connect(environment.database_url, autocommit=True) as conn:
        with conn.transaction():
            conn.execute("set local session_replication_role = replica")
            conn.execute(BACKGROUND_SQL, {"conversations": config.history_background_conversations, "messages": 10})
        for size, user in zip(config.history_sizes, users, strict=False):
            started = time.perf_counter()
            targets[size] = seed(conn, user, size)
            seeding[size] = time.perf_counter() - started
        conn.execute("analyze public.messages")
        in_database = time_in_database(conn, targets, budget, limit, config.history_calls)
        plan = scan_kinds(conn.execute(PLAN_SQL, {"message": targets[max(targets)], "limit": limit}).fetchone())
    client = service_client(
        settings.supabase_url, settings.supabase_service_role_key.get_secret_value(), shared_http_client(64)
    )
    through_gateway, returned = time_through_gateway(client, targets, budget, limit, config.history_calls)
    smallest, largest = min(targets), max(targets)
    result: dict[str, Any] = {
        "token_budget": budget,
        "max_messages": limit,
        "calls": config.history_calls,
        "background_conversations": config.history_background_conversations,
        "largest_plan_scans": plan,
        "sizes": [
            {
                "messages": size,
                "seed_seconds": round(seeding[size], 3),
                "context_messages": returned[size],
                "fetch_context_median_ms": round(statistics.median(through_gateway[size]), 3),
                "fetch_context_p95_ms": round(sorted(through_gateway[size])[int(0.95 * (len(through_gateway[size]) - 1))], 3),
                "sql_median_ms": round(statistics.median(in_database[size]), 3),
            }
            for size in targets
        ],
    }
    medians = {entry["messages"]: entry["fetch_context_median_ms"] for entry in result["sizes"]}
    sql = {entry["messages"]: entry["sql_median_ms"] for entry in result["sizes"]}
    result["ratio_largest_to_smallest"] = round(medians[largest] / medians[smallest], 3)
    result["sql_ratio_largest_to_smallest"] = round(sql[largest] / sql[smallest], 3)
    print("  history    fetch_context median " + ", ".join(f"{size}: {medians[size]:.2f} ms" for size in medians)
          + f"; ratio {result['ratio_largest_to_smallest']}", flush=True)
    return result


def time_through_gateway(
    client: Client, targets: dict[int, str], budget: int, limit: int, calls: int
) -> tuple[dict[int, list[float]], dict[int, int]]:
    timings: dict[int, list[float]] = {size: [] for size in targets}
    returned: dict[int, int] = {}
    for call in range(WARMUP_CALLS + calls):
        for size, message_id in targets.items():
            started = time.perf_counter()
            context = fetch_message_context(client, message_id, budget, limit)
            elapsed = (time.perf_counter() - started) * 1000
            if call >= WARMUP_CALLS:
                timings[size].append(elapsed)
            returned[size] = len(context)
    return timings, returned


def fetch_message_context(client: Client, message_id: str, budget: int, limit: int) -> list[dict[str, str]]:
    """The SQL function claim_message_for_reply builds its context with, called as the service does."""
    params = {"message_id": message_id, "token_budget": budget, "max_messages": limit}
    rows: Any = client.rpc("fetch_message_context", params).execute().data
    return list(rows or [])


def time_in_database(
    conn: psycopg.Connection[Any], targets: dict[int, str], budget: int, limit: int, calls: int
) -> dict[int, list[float]]:
    timings: dict[int, list[float]] = {size: [] for size in targets}
    for call in range(WARMUP_CALLS + calls):
        for size, message_id in targets.items():
            started = time.perf_counter()
            conn.execute("select public.fetch_message_context(%s, %s, %s)", (message_id, budget, limit)).fetchone()
            if call >= WARMUP_CALLS:
                timings[size].append((time.perf_counter() - started) * 1000)
    return timings


def scan_kinds(explained: Any) -> list[str]:
    """The scan nodes of an EXPLAIN (FORMAT JSON) plan, e.g. ["Index Scan on messages"]."""
    found: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        if "Scan" in node.get("Node Type", ""):
            found.append(f"{node['Node Type']} on {node.get('Relation Name', '?')} ({node.get('Index Name', 'no index')})")
        for child in node.get("Plans", []):
            walk(child)

    walk(explained[0][0]["Plan"])
    return found
