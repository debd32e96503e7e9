"""Setting the database's usage limits (private.quota_defaults) from code, for the local stack's
callers that need other limits than a project's defaults: the tests (generous, except where a
test is about the limits) and the benchmarks (load far above any per-user quota)."""

from __future__ import annotations

import psycopg
from psycopg import sql

QUOTA_COLUMNS = (
    "messages_per_window",
    "window_seconds",
    "messages_per_day",
    "tokens_per_day",
    "max_conversations",
    "system_prompt_max_chars",
)
# Far above any load the tests or benchmarks generate; the system prompt limit stays as shipped.
GENEROUS = {
    "messages_per_window": 1_000_000_000,
    "messages_per_day": 1_000_000_000,
    "tokens_per_day": 1_000_000_000_000,
    "max_conversations": 1_000_000_000,
}


def set_quota_defaults(database_url: str, limits: dict[str, int]) -> None:
    """What an operator does in the SQL editor: `update private.quota_defaults set ...`."""
    unknown = set(limits) - set(QUOTA_COLUMNS)
    if unknown:
        raise ValueError(f"unknown quota columns: {sorted(unknown)}")
    assignments = sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.Identifier(name), sql.Literal(value)) for name, value in limits.items()
    )
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("update private.quota_defaults set {}, updated_at = now()").format(assignments))
