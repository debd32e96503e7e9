"""The shared set-up of every benchmark: a local stack and the service as the Procfile starts it,
on free ports in a temporary directory, torn down afterwards; optionally the baseline beside it.

The service gets the Procfile's command and gunicorn.conf.py's defaults (WEB_CONCURRENCY and
GUNICORN_THREADS are never set here: the defaults are what is measured). The only settings
changed are the ones a benchmark must change: production logging at WARNING (no line per request
to format) and the per-user rate limit off (a few users send thousands of requests).
"""

from __future__ import annotations

import contextlib
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
import psycopg
from supabase import ClientOptions, create_client

from bench.baseline_process import BaselineProcess
from bench.cpu import CpuMeter
from devstack.quotas import GENEROUS, set_quota_defaults
from devstack.service_process import ServiceProcess
from devstack.serving import free_port
from devstack.stack import LocalStack, StackConfig

BENCH_SERVICE_ENV = {
    "APP_ENV": "production",
    "CORS_ORIGINS": "http://localhost",
    "LOG_LEVEL": "WARNING",
    "OPENAI_MODEL": "fake-model",
}


@dataclass
class BenchEnvironment:
    stack: LocalStack
    service: ServiceProcess
    state_dir: Path
    env: dict[str, str]  # the service's environment; the baseline gets the same
    baseline: BaselineProcess | None = None

    @property
    def database_url(self) -> str:
        return self.stack.database_url

    @property
    def cpu_meter(self) -> CpuMeter:
        def pid(process: object) -> int | None:
            popen = getattr(process, "process", None)
            return popen.pid if popen is not None else None

        return CpuMeter(pid(self.service), pid(self.baseline), pid(self.stack.postgres))

    def set_model_latency(self, milliseconds: float) -> None:
        assert self.stack.fake_model is not None
        httpx.post(f"{self.stack.fake_model.url}/_fake/config", json={"latency_ms": milliseconds}).raise_for_status()

    def sign_up(self) -> str:
        """A new user's access token, obtained the way a frontend gets one."""
        assert self.stack.keys is not None
        client = create_client(self.stack.api_url, self.stack.keys.api_key("anon"),
                               options=ClientOptions(auto_refresh_token=False, persist_session=False))
        session = client.auth.sign_up({"email": f"{uuid.uuid4()}@bench.test", "password": "benchmark"}).session
        assert session is not None
        return session.access_token

    def enable_webhook(self, enabled: bool) -> None:
        """The baseline had no webhook: while it runs, the trigger finds no configuration and
        queues nothing, so its saved messages cost the service nothing (they are saved as done,
        so the re-drive sweep ignores them too)."""
        if enabled:
            self.stack.configure_webhook(f"{self.service.url}/webhooks/messages")
        else:
            with psycopg.connect(self.database_url, autocommit=True) as conn:
                conn.execute("delete from private.webhook_config where name = 'messages'")

    def unsettled_messages(self) -> int:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            row = conn.execute(
                "select count(*) from public.messages where role = 'user' and status in ('pending', 'processing')"
            ).fetchone()
        return int(row[0]) if row else 0

    def wait_until_settled(self, timeout_seconds: float) -> int:
        """Let work a cut-off step left behind finish before the next step is measured. Returns
        how many user messages were still unanswered when the wait ended (0 = settled)."""
        deadline = time.monotonic() + timeout_seconds
        while (left := self.unsettled_messages()) and time.monotonic() < deadline:
            time.sleep(0.5)
        return left


def user_id_of(access_token: str) -> str:
    """The token's subject. Read without verification: we minted it a moment ago."""
    return str(jwt.decode(access_token, options={"verify_signature": False})["sub"])


@contextlib.contextmanager
def bench_environment(*, with_baseline: bool = False, **service_env: str) -> Iterator[BenchEnvironment]:
    with tempfile.TemporaryDirectory(prefix="bench-") as directory:
        state_dir = Path(directory)
        stack = LocalStack(
            StackConfig(state_dir=state_dir, api_port=free_port(), db_port=free_port(), model_port=free_port())
        ).start()
        set_quota_defaults(stack.database_url, GENEROUS)  # the load is many users' worth, from a few
        env = {**stack.service_environment(), **BENCH_SERVICE_ENV, **service_env}
        service = ServiceProcess(env, port=free_port(), log_path=state_dir / "service.log")
        baseline = BaselineProcess(env, port=free_port(), log_path=state_dir / "baseline.log") if with_baseline else None
        try:
            service.start()
            if baseline is not None:
                baseline.start()
            stack.configure_webhook(f"{service.url}/webhooks/messages")
            yield BenchEnvironment(stack, service, state_dir, env, baseline)
        finally:
            if baseline is not None:
                baseline.stop()
            service.stop()
            stack.stop()
