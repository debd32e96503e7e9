"""The service as the Procfile starts it (gunicorn in a child process), with test timings."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from devstack.service_process import ServiceProcess
from devstack.serving import free_port

if TYPE_CHECKING:
    from devstack.stack import LocalStack

SERVICE_TEST_SETTINGS = {
    "APP_ENV": "test",
    "OPENAI_MODEL": "fake-model",
    "OPENAI_MODELS": "fake-model-2",
    "OPENAI_TIMEOUT_SECONDS": "1",
    "MODEL_MAX_ATTEMPTS": "3",
    "MODEL_RETRY_INITIAL_SECONDS": "0.02",
    "MODEL_RETRY_MAX_SECONDS": "0.2",
    "LEASE_SECONDS": "5",
    "REDRIVE_INTERVAL_SECONDS": "0.5",
    "REDRIVE_GRACE_SECONDS": "30",
    "WEB_CONCURRENCY": "1",
    "GUNICORN_THREADS": "8",
    "CONTEXT_TOKEN_BUDGET": "6000",
    "CHAT_REPLY_TIMEOUT_SECONDS": "8",
    # Off unless a test turns them on (tests/e2e/test_api_branches.py): a title is one more model
    # call, which tests counting the model's requests as generations would count.
    "GENERATE_TITLES": "false",
}


def service_env(stack: LocalStack, **overrides: str) -> dict[str, str]:
    return {**stack.service_environment(), **SERVICE_TEST_SETTINGS, **overrides}


def start_service(stack: LocalStack, state_dir: Path, **overrides: str) -> ServiceProcess:
    port = free_port()
    return ServiceProcess(service_env(stack, **overrides), port=port, log_path=state_dir / f"service-{port}.log").start()
