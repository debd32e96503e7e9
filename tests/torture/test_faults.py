"""The promise under fire: every user message ends with exactly one reply, or as `failed` with an
error its author can read, while gunicorn workers are SIGKILLed mid-generation, PostgreSQL is
restarted under load, the model answers 429/500 or hangs in bursts, and webhooks are delivered
twice, out of order, or not at all. Each scenario ends with the ledger (tests/torture/ledger.py).

Counts are small enough for CI; `--long` (or TORTURE_LONG=1) multiplies them."""

from __future__ import annotations

import functools
import os
import random
import signal
import threading
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable

import httpx
import psutil
import psycopg
import pytest

from devstack.postgres import LocalPostgres
from devstack.service_process import ServiceProcess
from devstack.stack import LocalStack
from tests.support.polling import wait_until
from tests.support.stack import FakeModelControl
from tests.torture.harness import StartService
from tests.torture.ledger import settle_and_account
from tests.torture.traffic import DirectUser, GatewayUser

pytestmark = pytest.mark.timeout(900)

# A short lease and a fast sweep, so a message whose worker died is answered within seconds.
FAST_REDRIVE = {"REDRIVE_INTERVAL_SECONDS": "0.2", "REDRIVE_GRACE_SECONDS": "1"}


def webhook_to(stack: LocalStack, service: ServiceProcess) -> None:
    stack.configure_webhook(f"{service.url}/webhooks/messages")


# ----------------------------------------------------------------------------- 1. SIGKILLed workers


def in_flight_model_clients(stack: LocalStack) -> set[int]:
    """Client ports of the requests the fake model has received and not yet answered.

    Read from the in-process uvicorn's connection state (h11: one request cycle per
    connection, `response_complete` once the answer has been sent)."""
    assert stack.fake_model is not None
    state = stack.fake_model.server.server_state
    for _ in range(10):
        try:
            connections = list(state.connections)
            break
        except RuntimeError:  # the set changed while we copied it
            continue
    else:
        return set()
    ports = set()
    for connection in connections:
        cycle = getattr(connection, "cycle", None)
        client = getattr(connection, "client", None)
        if cycle is not None and not cycle.response_complete and client:
            ports.add(int(client[1]))
    return ports


def gunicorn_workers(service: ServiceProcess) -> list[psutil.Process]:
    """The worker processes: the gunicorn master's live children (never the master itself)."""
    assert service.process is not None
    return [child for child in psutil.Process(service.process.pid).children()
            if child.is_running() and child.status() != psutil.STATUS_ZOMBIE]


def worker_generating(service: ServiceProcess, stack: LocalStack) -> int | None:
    """The pid of a worker with a model request in flight (its connection's request unanswered)."""
    assert stack.fake_model is not None
    in_flight = in_flight_model_clients(stack)
    if not in_flight:
        return None
    for worker in gunicorn_workers(service):
        try:
            connections = worker.net_connections(kind="tcp")
        except psutil.Error:  # it died meanwhile
            continue
        for connection in connections:
            if connection.raddr and connection.raddr.port == stack.fake_model.port and connection.laddr.port in in_flight:
                return worker.pid
    return None


def test_workers_sigkilled_mid_generation_leave_every_message_answered_once(
    torture_stack: LocalStack, torture_url: str, start_service: StartService, fake: FakeModelControl, long_run: bool
) -> None:
    kills = 60 if long_run else 20
    per_round = 3
    service = start_service(
        WEB_CONCURRENCY="2", LEASE_SECONDS="3", OPENAI_TIMEOUT_SECONDS="2", MODEL_MAX_ATTEMPTS="1",
        MODEL_RETRY_MAX_SECONDS="0", MAX_ATTEMPTS="10", **FAST_REDRIVE,
    )
    webhook_to(torture_stack, service)
    fake.set_latency(500)
    user = GatewayUser(torture_stack)
    master = service.process
    assert master is not None

    sent: list[str] = []
    killed: list[int] = []
    for round_number in range(kills):
        conversation = user.new_conversation()
        sent += user.send(conversation, *(f"kill round {round_number} message {n}" for n in range(per_round)))
        victim = wait_until(lambda: worker_generating(service, torture_stack), deadline_seconds=20, interval=0.01)
        os.kill(victim, signal.SIGKILL)
        killed.append(victim)

    assert master.poll() is None, "the gunicorn master itself must survive its workers' deaths"
    wait_until(lambda: len(gunicorn_workers(service)) == 2, deadline_seconds=20)
    ledger = settle_and_account(torture_url, "worker-sigkill", expected=sent, services=[service], deadline_seconds=90)
    interrupted = sum(attempts - 1 for attempts in ledger.attempts.values() if attempts > 1)
    ledger.extra.update(kills=len(killed), interrupted_generations=interrupted)
    ledger.report()
    ledger.assert_clean()
    assert ledger.failed == 0, f"every message must be answered: {ledger.errors}"
    assert ledger.answered == kills * per_round
    assert interrupted >= kills * 3 // 4, "most kills must have cut a generation short (each one re-driven)"


# ----------------------------------------------------------------------------- 2. PostgreSQL restarts


class Sender(threading.Thread):
    """Keeps inserting messages until stopped. A message counts as committed once its insert
    returned; one whose insert failed (the database was down) is not counted, and the sender goes on
    with a new one. (The ledger still accounts for every user message the database holds, so an
    insert that committed although its client saw an error must be settled too.)"""

    def __init__(self, name: str, send: Callable[[str], list[str]], pause_seconds: float) -> None:
        super().__init__(name=f"sender-{name}", daemon=True)
        self.label = name
        self.send = send
        self.pause_seconds = pause_seconds
        self.committed: list[str] = []
        self.failures = 0
        self.last_error = ""
        self.halt = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        number = 0
        while not self.halt.is_set():
            number += 1
            try:
                ids = self.send(f"{self.label} message {number}")
            except Exception as error:  # anything at all: not known to be committed
                with self._lock:
                    self.failures += 1
                    self.last_error = f"{type(error).__name__}: {error}"[:300]
                self.halt.wait(0.05)
                continue
            with self._lock:
                self.committed.extend(ids)
            self.halt.wait(self.pause_seconds)

    def counts(self) -> tuple[int, int]:
        with self._lock:
            return len(self.committed), self.failures

    def __repr__(self) -> str:
        committed, failures = self.counts()
        return f"<{self.label}: committed={committed} failures={failures} last_error={self.last_error!r}>"


def answered_count(database_url: str) -> int:
    try:
        with psycopg.connect(database_url, autocommit=True, connect_timeout=2) as conn:
            row = conn.execute("select count(*) from public.messages where role = 'user' and status = 'done'").fetchone()
    except psycopg.OperationalError:
        return -1
    return int(row[0]) if row else 0


def unsettled_count(database_url: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "select count(*) from public.messages where role = 'user' and status in ('pending', 'processing')").fetchone()
    return int(row[0]) if row else 0


def test_postgres_restarted_under_load_loses_and_doubles_nothing(
    torture_stack: LocalStack, torture_postgres: LocalPostgres, torture_url: str, start_service: StartService,
    fake: FakeModelControl, long_run: bool,
) -> None:
    modes = ["fast", "immediate"] * 4 if long_run else ["fast", "fast", "immediate"]
    service = start_service(
        WEB_CONCURRENCY="2", LEASE_SECONDS="5", OPENAI_TIMEOUT_SECONDS="1", MODEL_MAX_ATTEMPTS="3",
        MODEL_RETRY_MAX_SECONDS="0.2", **FAST_REDRIVE,
    )
    webhook_to(torture_stack, service)
    fake.set_latency(200)  # generations in flight when the database goes
    direct = DirectUser(torture_url)
    direct_conversation = direct.new_conversation()
    gateway = GatewayUser(torture_stack)
    gateway_conversation = gateway.new_conversation()
    senders = [
        Sender("direct", lambda text: direct.send(direct_conversation, text, connect_timeout=2), 0.05),
        Sender("gateway", lambda text: gateway.send(gateway_conversation, text), 0.05),
    ]
    assert torture_stack.pgnet is not None
    pgnet = torture_stack.pgnet
    per_phase = 40 if long_run else 25  # messages each sender commits between two restarts

    def recovered(since: list[tuple[int, int]], answered_before: int, delivered_before: int) -> bool:
        """Both doors committed new messages, pg_net delivered again and the service answered again."""
        now = [sender.counts()[0] for sender in senders]
        return (all(count >= before[0] + per_phase for count, before in zip(now, since, strict=False))
                and pgnet.delivered > delivered_before and answered_count(torture_url) > answered_before)

    unsettled_at_stops = 0
    for sender in senders:
        sender.start()
    try:
        for mode in [*modes, None]:
            marks = [sender.counts() for sender in senders]
            progress = functools.partial(recovered, marks, answered_count(torture_url), pgnet.delivered)
            wait_until(progress, deadline_seconds=60, interval=0.05)
            assert all(sender.is_alive() for sender in senders), senders
            if mode is None:
                break
            unsettled_at_stops += wait_until(lambda: unsettled_count(torture_url), deadline_seconds=10)  # work in flight
            torture_postgres.stop(mode)
            # Down until the direct sender has been refused several times (about half a second).
            refused = senders[0].counts()[1] + 8
            wait_until(functools.partial(lambda enough: senders[0].counts()[1] >= enough, refused),
                       deadline_seconds=10, interval=0.01)
            torture_postgres.start()
    finally:
        for sender in senders:
            sender.halt.set()
        for sender in senders:
            sender.join(timeout=60)
    assert not any(sender.is_alive() for sender in senders), f"a sender is stuck: {senders}"

    # The gateway's auth pool still holds connections from before the last restart: count the
    # sign-ups they fail before one succeeds (a devstack limit: its pools do not check connections).
    auth_errors = 0
    while True:
        try:
            GatewayUser(torture_stack)
            break
        except Exception:
            auth_errors += 1
            assert auth_errors < 20, "the gateway's sign-up never recovered from the restart"

    committed = [message for sender in senders for message in sender.committed]
    ledger = settle_and_account(torture_url, "postgres-restart", expected=committed, services=[service], deadline_seconds=120)
    ledger.extra.update(restarts=len(modes), modes="+".join(modes), unsettled_at_stops=unsettled_at_stops,
                        unconfirmed_inserts=sum(sender.failures for sender in senders),
                        redriven=sum(attempts > 1 for attempts in ledger.attempts.values()),
                        gateway_signup_errors_after_restart=auth_errors)
    ledger.report()
    ledger.assert_clean()
    assert ledger.answered > 0


# ----------------------------------------------------------------------------- 3. model faults in bursts

MODEL_MAX_ATTEMPTS = 3
BURST_FAULTS: list[dict[str, object]] = [
    {"kind": "rate_limit", "retry_after": 0.05},
    {"kind": "server_error"},
    {"kind": "hang", "seconds": 1.5},  # beyond OPENAI_TIMEOUT_SECONDS
]
ERROR_FOR_LAST_FAULT = {
    "rate_limit": "The AI model is busy (rate limited). Please send your message again.",
    "server_error": "The AI model had a server error. Please send your message again.",
    "hang": "The AI model did not answer in time. Please send your message again.",
}


def pending_faults(fake: FakeModelControl) -> list[object]:
    return list(httpx.get(f"{fake.url}/_fake/faults").json()["faults"])


def test_model_faults_in_bursts_end_answered_or_failed_readably(
    torture_stack: LocalStack, torture_url: str, start_service: StartService, fake: FakeModelControl, long_run: bool
) -> None:
    bursts = 12 if long_run else 4
    per_burst, faults_per_burst = 6, 10
    service = start_service(
        WEB_CONCURRENCY="2", OPENAI_TIMEOUT_SECONDS="1", MODEL_MAX_ATTEMPTS=str(MODEL_MAX_ATTEMPTS),
        MODEL_RETRY_INITIAL_SECONDS="0.02", MODEL_RETRY_MAX_SECONDS="0.2", LEASE_SECONDS="5", **FAST_REDRIVE,
    )
    webhook_to(torture_stack, service)
    choose = random.Random(20261125)
    user = DirectUser(torture_url)
    texts: dict[str, str] = {}  # content -> message id
    queued = 0
    for burst in range(bursts):
        faults = [choose.choice(BURST_FAULTS) for _ in range(faults_per_burst)]
        fake.queue_faults(*faults)
        queued += len(faults)
        contents = [f"burst {burst} message {n} {uuid.uuid4().hex[:8]}" for n in range(per_burst)]
        texts.update(zip(contents, user.send(user.new_conversation(), *contents), strict=False))
        wait_until(lambda: not pending_faults(fake), deadline_seconds=60)

    ledger = settle_and_account(torture_url, "model-fault-bursts", expected=texts.values(), services=[service])
    requests = fake.requests()
    by_message: dict[str, list[str]] = defaultdict(list)
    for request in requests:
        messages = request["messages"]
        assert isinstance(messages, list) and messages, request
        by_message[texts[messages[-1]["content"]]].append(str(request["outcome"]))
    outcomes = Counter(outcome for sequence in by_message.values() for outcome in sequence)
    ledger.extra.update(model_requests=len(requests), faults=queued, **{f"outcome_{k}": v for k, v in sorted(outcomes.items())})
    ledger.report()
    ledger.assert_clean()

    assert sum(count for outcome, count in outcomes.items() if outcome != "ok") == queued, "every fault was consumed once"
    assert set(by_message) == set(texts.values()), "every message reached the model"
    with psycopg.connect(torture_url, autocommit=True) as conn:
        final = {str(row[0]): (row[1], row[2]) for row in conn.execute(
            "select id, status, error from public.messages where role = 'user'").fetchall()}
    for message_id, sequence in by_message.items():
        claims = ledger.attempts[message_id]
        status, error = final[message_id]
        assert len(sequence) <= MODEL_MAX_ATTEMPTS * claims, f"{message_id}: {sequence} in {claims} claim(s)"
        if status == "done":
            assert sequence[-1] == "ok", f"{message_id} answered, yet its last model call was {sequence[-1]}"
        else:
            assert "ok" not in sequence[-MODEL_MAX_ATTEMPTS:], f"{message_id} failed after a good answer: {sequence}"
            assert error == ERROR_FOR_LAST_FAULT[sequence[-1]], f"{message_id}: {error!r} after {sequence}"
            if claims == 1:
                assert len(sequence) == MODEL_MAX_ATTEMPTS, f"{message_id} gave up early: {sequence}"


# ----------------------------------------------------------------------------- 4. duplicated deliveries


def test_every_webhook_delivered_twice_and_out_of_order_doubles_nothing(
    torture_stack: LocalStack, torture_url: str, start_service: StartService, fake: FakeModelControl, long_run: bool
) -> None:
    batches, per_batch = (40, 8) if long_run else (10, 6)
    service = start_service(WEB_CONCURRENCY="2")
    webhook_to(torture_stack, service)
    assert torture_stack.pgnet is not None
    torture_stack.pgnet.faults.duplicate = True  # each batch, then the same batch again in reverse order
    fake.set_latency(50)
    user = GatewayUser(torture_stack)
    sent: list[str] = []
    for batch in range(batches):
        sent += user.send(user.new_conversation(), *(f"twice {batch} {n}" for n in range(per_batch)))

    ledger = settle_and_account(torture_url, "duplicate-deliveries", expected=sent, services=[service])
    with psycopg.connect(torture_url, autocommit=True) as conn:
        deliveries = dict(conn.execute(
            "select coalesce(status_code::text, error_msg), count(*) from net._http_response group by 1").fetchall())
    generations = len(fake.requests())
    ledger.extra.update(deliveries=sum(deliveries.values()), model_requests=generations)
    ledger.report()
    ledger.assert_clean()
    assert ledger.answered == len(sent)
    assert deliveries == {"202": 2 * len(sent)}, deliveries
    assert generations == len(sent), "the second delivery must not start a second generation"


# ----------------------------------------------------------------------------- 5. dropped deliveries


def dropped_count(database_url: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("select count(*) from net._http_response where error_msg like 'dropped%'").fetchone()
    return int(row[0]) if row else 0


def test_one_webhook_in_ten_dropped_loses_nothing(
    torture_stack: LocalStack, torture_url: str, start_service: StartService, fake: FakeModelControl, long_run: bool
) -> None:
    batches, per_batch, at_least_dropped = (60, 5, 15) if long_run else (15, 4, 3)
    service = start_service(WEB_CONCURRENCY="2", **FAST_REDRIVE)
    webhook_to(torture_stack, service)
    assert torture_stack.pgnet is not None
    torture_stack.pgnet.faults.drop_ratio = 0.1
    user = GatewayUser(torture_stack)
    sent: list[str] = []
    batch = 0
    # At least `batches` batches, and on until enough deliveries were dropped (the draw is random).
    while batch < batches or dropped_count(torture_url) < at_least_dropped:
        assert batch < 10 * batches, "deliveries are not being dropped"
        sent += user.send(user.new_conversation(), *(f"maybe dropped {batch} {n}" for n in range(per_batch)))
        batch += 1

    ledger = settle_and_account(torture_url, "dropped-deliveries", expected=sent, services=[service])
    dropped = dropped_count(torture_url)
    ledger.extra.update(dropped_deliveries=dropped)
    ledger.report()
    ledger.assert_clean()
    assert ledger.answered == len(sent)
    assert dropped >= at_least_dropped
