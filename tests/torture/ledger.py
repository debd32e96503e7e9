"""The one accounting every torture scenario ends with: wait (polling, with a deadline) until
every user message is settled, then count, from the database, what each one ended as.

A user message is
- answered: status `done` and exactly one assistant row with `reply_to` = its id, itself `done`;
- failed: status `failed` with a non-empty `error` its author can read, and no reply, or only a
  partial streamed one marked `failed` too (never one left `streaming`);
- doubled: more than one assistant row replying to it;
- lost: anything else (still pending or processing at the deadline, done without a reply, failed
  without an error or with a reply, or a message the test saw committed that is not there).
Assistant rows with no `reply_to` are counted too (orphan_replies), and must be zero.

http_500 counts the 500s the services answered, from their JSON access logs (net._http_response
is unlogged, so a database crash would erase its evidence).
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from devstack.service_process import ServiceProcess

LINES: list[str] = []  # every ledger line printed this run, repeated in the terminal summary
SETTLED = ("done", "failed")
INTERNAL_ERROR_EVENTS = {"unhandled error", "unexpected error answering message; marking it failed", "reply worker crashed"}


@dataclass
class Ledger:
    scenario: str
    messages: int = 0
    answered: int = 0
    failed: int = 0
    lost: dict[str, str] = field(default_factory=dict)  # message id -> what is wrong with it
    doubled: dict[str, int] = field(default_factory=dict)  # message id -> number of replies
    orphan_replies: int = 0
    http_500: int = 0
    internal_errors: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # failed messages' error text -> count
    attempts: dict[str, int] = field(default_factory=dict)  # message id -> claims it took
    extra: dict[str, object] = field(default_factory=dict)  # scenario-specific figures for the line
    reported: bool = False

    @property
    def line(self) -> str:
        extras = "".join(f" {name}={value}" for name, value in self.extra.items())
        return (
            f"torture {self.scenario}: messages={self.messages} answered={self.answered} failed={self.failed}"
            f" lost={len(self.lost)} doubled={len(self.doubled)} http_500={self.http_500}"
            f" orphan_replies={self.orphan_replies} internal_errors={self.internal_errors}{extras}"
        )

    def report(self) -> None:
        """Print the line once (visible with -s) and keep it for the run's terminal summary.
        Add the scenario's own figures to `extra` first."""
        if not self.reported:
            self.reported = True
            print(self.line)
            LINES.append(self.line)

    def assert_clean(self, *, http: bool = True) -> None:
        """Nothing lost, nothing doubled, no reply without its message, and (for HTTP) no 500."""
        self.report()
        sample = dict(list(self.lost.items())[:5])
        assert not self.lost, f"{self.line}\nlost messages (first 5): {sample}"
        assert not self.doubled, f"{self.line}\ndoubled messages: {self.doubled}"
        assert self.orphan_replies == 0, f"{self.line}\nassistant rows without reply_to"
        assert self.answered + self.failed == self.messages, self.line
        if http:
            assert self.http_500 == 0, f"{self.line}\nthe services answered 500 (see their logs)"


def settle_and_account(
    database_url: str,
    scenario: str,
    *,
    expected: Collection[str] = (),
    services: Iterable[ServiceProcess] = (),
    deadline_seconds: float = 60.0,
    poll_seconds: float = 0.1,
) -> Ledger:
    """Wait until every user message in the database (and every id in `expected`, the ones the
    test saw committed) is settled, or the deadline passes; then count and return the ledger (the
    caller adds its figures to `extra`, then `report()`s or `assert_clean()`s, which reports).
    Survives the database being briefly unreachable while it polls."""
    expected_ids = set(expected)
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        try:
            if _all_settled(database_url, expected_ids):
                break
        except psycopg.OperationalError:
            pass
        time.sleep(poll_seconds)
    ledger = account(database_url, scenario, expected_ids)
    ledger.http_500, ledger.internal_errors = count_http_500(services)
    return ledger


def _all_settled(database_url: str, expected: set[str]) -> bool:
    with psycopg.connect(database_url, autocommit=True, connect_timeout=2) as conn:
        rows = conn.execute("select id::text, status from public.messages where role = 'user'").fetchall()
    statuses = dict(rows)
    return all(status in SETTLED for status in statuses.values()) and expected <= statuses.keys()


def account(database_url: str, scenario: str, expected: Collection[str] = ()) -> Ledger:
    """Count what every user message ended as, right now."""
    with psycopg.connect(database_url, autocommit=True, connect_timeout=5) as conn:
        rows = conn.execute(
            "select u.id::text, u.status, u.error, u.attempts, count(r.id), min(r.status)"
            "  from public.messages u left join public.messages r on r.reply_to = u.id and r.role = 'assistant'"
            " where u.role = 'user' group by u.id"
        ).fetchall()
        orphans = conn.execute(
            "select count(*) from public.messages where role = 'assistant' and reply_to is null"
        ).fetchone()
    ledger = Ledger(scenario, messages=len(rows), orphan_replies=int(orphans[0]) if orphans else 0)
    seen = set()
    for message_id, status, error, attempts, replies, reply_status in rows:
        seen.add(message_id)
        ledger.attempts[message_id] = int(attempts)
        if replies > 1:
            ledger.doubled[message_id] = int(replies)
        elif status == "done" and replies == 1 and reply_status == "done":
            ledger.answered += 1
        elif status == "failed" and (replies == 0 or reply_status == "failed") and (error or "").strip():
            ledger.failed += 1
            ledger.errors[error] = ledger.errors.get(error, 0) + 1
        else:
            ledger.lost[message_id] = (
                f"status={status} replies={replies} reply_status={reply_status} error={error!r} attempts={attempts}"
            )
    for message_id in set(expected) - seen:
        ledger.lost[message_id] = "committed, but not in the database"
    ledger.messages += len(set(expected) - seen)
    return ledger


def count_http_500(services: Iterable[ServiceProcess]) -> tuple[int, int]:
    """(500 responses, internal-error log events) in the services' JSON logs."""
    responses = internal = 0
    for service in services:
        for event in _log_events(service.log_path):
            if event.get("event") == "request" and event.get("status") == 500:
                responses += 1
            if event.get("event") in INTERNAL_ERROR_EVENTS:
                internal += 1
    return responses, internal


def _log_events(path: Path | None) -> Iterable[dict[str, object]]:
    if path is None or not path.exists():
        return
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                yield event
