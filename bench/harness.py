"""The shared set-up of every benchmark: a local stack and the service as the Procfile starts it,
on free ports in a temporary directory, torn down afterwards."""

from __future__ import annotations

import contextlib
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from devstack.service_process import ServiceProcess
from devstack.serving import free_port
from devstack.stack import LocalStack, StackConfig
from supabase import ClientOptions, create_client


@dataclass
class BenchEnvironment:
    stack: LocalStack
    service: ServiceProcess
    state_dir: Path

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


@contextlib.contextmanager
def bench_environment(**service_env: str) -> Iterator[BenchEnvironment]:
    with tempfile.TemporaryDirectory(prefix="bench-") as directory:
        state_dir = Path(directory)
        stack = LocalStack(
            StackConfig(state_dir=state_dir, api_port=free_port(), db_port=free_port(), model_port=free_port())
        ).start()
        env = {
            **stack.service_environment(),
            "APP_ENV": "production",
            "CORS_ORIGINS": "http://localhost",
            "LOG_LEVEL": "WARNING",
            "OPENAI_MODEL": "fake-model",
            "RATE_LIMIT_REQUESTS": "0",
            **service_env,
        }
        service = ServiceProcess(env, port=free_port(), log_path=state_dir / "service.log")
        try:
            service.start()
            stack.configure_webhook(f"{service.url}/webhooks/messages")
            yield BenchEnvironment(stack, service, state_dir)
        finally:
            service.stop()
            stack.stop()
