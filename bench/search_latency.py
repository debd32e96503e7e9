"""Search latency on one user's many messages: `search_messages` as the browser calls it (PostgREST
through the gateway stand-in, with the user's JWT), through the REST door (GET /api/search), and
the same function directly in SQL as the user (role authenticated and the JWT claims, as
PostgREST sets them), so what the gateway adds is visible.

The messages are seeded straight into Postgres as the superuser: alternating questions and
replies of about 40 words, drawn with a seeded RNG from a fixed, Zipf-weighted vocabulary, so two
runs search the same text. Seeding runs with session_replication_role = replica (no webhook per
row, as bench/history.py seeds), in batches of COPY, then VACUUM ANALYZE as autovacuum would after
such a load (it also moves the GIN index's pending entries into the index proper).

The query words are picked by how many messages hold them (counted while generating): a rare
word (~0.4%), a common word (~3.6%), a word in about half of the messages; then a phrase of the
half word followed by the common word (the index finds the messages with both, the positions are
checked on each) and a word in none.
"""

from __future__ import annotations

import json
import random
import statistics
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone
from itertools import accumulate
from typing import Any

import httpx
import psycopg

from bench.harness import BenchEnvironment, user_id_of
from bench.stats import percentile

SEED = 20261207
VOCABULARY_SIZE = 5_000
WORDS_PER_MESSAGE = 40
MESSAGES_PER_CONVERSATION = 100
BATCH = 10_000
MAX_RESULTS = 20
WARMUP_CALLS = 3
TARGET_SHARES = {"rare_word": 0.004, "common_word": 0.036, "half_word": 0.5}
PATHS = ("postgrest", "rest_door", "sql")
NO_MATCH = "quixotry"  # consonant pairs the vocabulary's syllables never make

COPY_SQL = ("copy public.messages (id, conversation_id, user_id, role, content, status, reply_to, created_at)"
            " from stdin")


def vocabulary(rng: random.Random) -> list[str]:
    """Pronounceable made-up words of 2 to 4 syllables, none a real word in particular."""
    consonants, vowels = "bdfgklmnprstvz", "aeiou"
    words: set[str] = set()
    while len(words) < VOCABULARY_SIZE:
        words.add("".join(rng.choice(consonants) + rng.choice(vowels) for _ in range(rng.randint(2, 4))))
    return sorted(words)


def messages(count: int) -> tuple[list[str], Counter[str]]:
    """`count` message texts, and in how many messages each word occurs."""
    rng = random.Random(SEED)
    words = vocabulary(rng)
    rng.shuffle(words)
    weights = list(accumulate(1 / rank for rank in range(1, len(words) + 1)))  # Zipf, s = 1
    drawn = rng.choices(words, cum_weights=weights, k=count * WORDS_PER_MESSAGE)
    texts = [" ".join(drawn[i * WORDS_PER_MESSAGE:(i + 1) * WORDS_PER_MESSAGE]) for i in range(count)]
    held: Counter[str] = Counter()
    for i in range(count):
        held.update(set(drawn[i * WORDS_PER_MESSAGE:(i + 1) * WORDS_PER_MESSAGE]))
    assert NO_MATCH not in held
    return texts, held


def queries(held: Counter[str], count: int) -> dict[str, str]:
    """The word whose share of messages is nearest each target, the phrase, the word in none."""
    picked = {name: min(held, key=lambda word: abs(held[word] - share * count)) for name, share in TARGET_SHARES.items()}
    return {**picked, "phrase": f'"{picked["half_word"]} {picked["common_word"]}"', "no_match": NO_MATCH}


def seed(conn: psycopg.Connection[Any], user_id: str, texts: list[str]) -> None:
    """The user's conversations of MESSAGES_PER_CONVERSATION messages each, oldest first, a reply
    after each question."""
    rng = random.Random(SEED + 1)
    start = datetime.now(timezone.utc) - timedelta(days=365)
    conversations = [str(uuid.UUID(int=rng.getrandbits(128), version=4))
                     for _ in range(-(-len(texts) // MESSAGES_PER_CONVERSATION))]
    with conn.transaction():
        conn.execute("insert into public.conversations (id, user_id, title) select c::uuid, %s, 'search ' || n"
                     " from unnest(%s::text[]) with ordinality as t(c, n)", (user_id, conversations))
    question = ""
    for first in range(0, len(texts), BATCH):
        with conn.transaction():
            conn.execute("set local session_replication_role = replica")
            with conn.cursor().copy(COPY_SQL) as copy:
                for index in range(first, min(first + BATCH, len(texts))):
                    message_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
                    is_reply = index % 2 == 1
                    copy.write_row((message_id, conversations[index // MESSAGES_PER_CONVERSATION], user_id,
                                    "assistant" if is_reply else "user", texts[index], "done",
                                    question if is_reply else None, start + timedelta(seconds=index * 60)))
                    question = message_id


def run(environment: BenchEnvironment, total_messages: int, calls: int) -> dict[str, Any]:
    assert environment.stack.keys is not None
    token = environment.sign_up()
    user_id = user_id_of(token)
    started = time.perf_counter()
    texts, held = messages(total_messages)
    generated = time.perf_counter() - started
    with psycopg.connect(environment.database_url, autocommit=True) as conn:
        seed(conn, user_id, texts)
        seeded = time.perf_counter() - started
        conn.execute("vacuum (analyze) public.messages")
        asked = queries(held, total_messages)
        matching = {name: int(conn.execute(  # type: ignore[index]
            "select count(*) from public.messages where user_id = %s"
            " and to_tsvector('simple', content) @@ websearch_to_tsquery('simple', %s)", (user_id, query)).fetchone()[0])
            for name, query in asked.items()}
    loaded = time.perf_counter() - started
    print(f"search: {total_messages} messages generated in {generated:.1f} s, seeded by {seeded:.1f} s,"
          f" vacuumed by {loaded:.1f} s", flush=True)
    timings: dict[str, dict[str, list[float]]] = {path: {name: [] for name in asked} for path in PATHS}
    returned: dict[str, int] = {}
    gateway = httpx.Client(base_url=f"{environment.stack.api_url}/rest/v1", timeout=60,
                           headers={"apikey": environment.stack.keys.api_key("anon"), "Authorization": f"Bearer {token}"})
    door = httpx.Client(base_url=environment.service.url, timeout=60, headers={"Authorization": f"Bearer {token}"})
    claims = json.dumps({"role": "authenticated", "sub": user_id, "aud": "authenticated"})
    with gateway, door, psycopg.connect(environment.database_url, autocommit=True) as sql:
        callers = {"postgrest": lambda q: through_gateway(gateway, q), "rest_door": lambda q: through_door(door, q),
                   "sql": lambda q: in_sql(sql, claims, q)}
        for call in range(WARMUP_CALLS + calls):  # each round asks every query once: drift hits all alike
            for name, query in asked.items():
                for path, caller in callers.items():
                    began = time.perf_counter()
                    found = caller(query)
                    if call >= WARMUP_CALLS:
                        timings[path][name].append((time.perf_counter() - began) * 1000)
                    returned[name] = found
    return {
        "messages": total_messages, "words_per_message": WORDS_PER_MESSAGE, "vocabulary": VOCABULARY_SIZE,
        "rng_seed": SEED, "max_results": MAX_RESULTS, "calls_per_query": calls,
        "seed_seconds": round(seeded - generated, 1), "generate_seconds": round(generated, 1),
        "vacuum_analyze_seconds": round(loaded - seeded, 1),
        "queries": {name: {"query": query, "matching_messages": matching[name], "results": returned[name],
                           **{path: latency(timings[path][name]) for path in PATHS}}
                    for name, query in asked.items()},
    }


def latency(samples: list[float]) -> dict[str, float]:
    return {"p50_ms": round(statistics.median(samples), 2), "p95_ms": round(percentile(samples, 0.95), 2)}


def through_gateway(client: httpx.Client, query: str) -> int:
    """POST /rest/v1/rpc/search_messages with the user's JWT: what supabase-js's rpc() sends."""
    response = client.post("/rpc/search_messages", json={"query": query, "max_results": MAX_RESULTS})
    response.raise_for_status()
    return len(response.json())


def through_door(client: httpx.Client, query: str) -> int:
    response = client.get("/api/search", params={"q": query, "limit": MAX_RESULTS})
    response.raise_for_status()
    return len(response.json()["results"])


def in_sql(conn: psycopg.Connection[Any], claims: str, query: str) -> int:
    """The function as the user, as PostgREST runs it: role and claims set for the transaction."""
    with conn.transaction():
        conn.execute("set local role authenticated")
        conn.execute("select set_config('request.jwt.claims', %s, true)", (claims,))
        return len(conn.execute("select * from public.search_messages(%s, %s)", (query, MAX_RESULTS)).fetchall())


def table(result: dict[str, Any]) -> list[str]:
    lines = [f"search_messages on {result['messages']:,} messages of one user (p50 / p95 ms, {result['calls_per_query']}"
             f" calls each; seeded in {result['seed_seconds']} s):",
             f"  {'query':<12} {'matching':>9} {'PostgREST':>17} {'GET /api/search':>17} {'SQL as the user':>17}"]
    for name, figure in result["queries"].items():
        cells = [f"{figure[path]['p50_ms']:7.2f} / {figure[path]['p95_ms']:7.2f}" for path in PATHS]
        lines.append(f"  {name:<12} {figure['matching_messages']:>9,} " + " ".join(f"{cell:>17}" for cell in cells))
    return lines
