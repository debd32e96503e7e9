"""`python -m devstack`: start the local stack, print its status, then run the service as the
Procfile says against it, until Ctrl-C. This is what `make run` does."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from devstack.service_process import ServiceProcess
from devstack.stack import LocalStack, StackConfig

REPO_ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--state-dir", type=Path, default=REPO_ROOT / ".devstack")
    parser.add_argument("--no-service", action="store_true", help="start the stack only")
    parser.add_argument("--api-port", type=int, default=54321, help="the gateway (REST, Auth, Realtime)")
    parser.add_argument("--db-port", type=int, default=54322, help="the embedded Postgres")
    parser.add_argument("--model-port", type=int, default=54330, help="the fake model")
    parser.add_argument("--web-port", type=int, default=54380, help="the chat page (web/); 0: no page")
    parser.add_argument("--service-port", type=int, default=8000, help="the service")
    args = parser.parse_args()
    service_bind = f"127.0.0.1:{args.service_port}"

    started = time.monotonic()
    config = StackConfig(
        state_dir=args.state_dir,
        api_port=args.api_port,
        db_port=args.db_port,
        model_port=args.model_port,
        web_port=args.web_port or None,
        database_url=os.environ.get("DATABASE_URL") or None,
        webhook_url=f"http://{service_bind}/webhooks/messages",
    )
    stack = LocalStack(config).start()
    print("Local Supabase stand-in is running (see docs/local-stack.md: what stands in for what).\n")
    print(stack.status_text(), flush=True)
    if stack.chat_page_url:
        print(f"\nChat page: open {stack.chat_page_url} and sign up (any email and password).", flush=True)
    elif config.web_port:
        print(f"\nNo chat page: {stack.chat_page_missing}. Everything else runs.", flush=True)

    env_file = args.state_dir / "env"
    stack.write_env_file(env_file)
    print(f"\nThe service's environment is in {env_file} (for `source` and `honcho start -e`).", flush=True)
    env = {**os.environ, **stack.service_environment(), "BIND": service_bind, "APP_ENV": "development"}
    if os.environ.get("OPENAI_API_KEY"):
        env["OPENAI_API_KEY"] = os.environ["OPENAI_API_KEY"]
        env["OPENAI_BASE_URL"] = os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1")
        print("\nModel: OpenAI (OPENAI_API_KEY is set).", flush=True)
    else:
        banner = "!" * 78
        print(f"\n{banner}\n!! OPENAI_API_KEY is not set: replies come from the FAKE local model at"
              f"\n!! {stack.model_url} (it echoes the prompt). Set OPENAI_API_KEY for real replies.\n{banner}",
              flush=True)
    if args.no_service:
        return _wait_forever(stack, None)
    print(f"\nStack ready in {time.monotonic() - started:.1f} s; starting the service as the Procfile says.", flush=True)
    host, _, port = service_bind.partition(":")
    service = ServiceProcess(env, host=host, port=int(port)).start()
    print(f"Service ready on http://{service_bind} ({time.monotonic() - started:.1f} s after start). Ctrl-C stops all.",
          flush=True)
    return _wait_forever(stack, service)


def _wait_forever(stack: LocalStack, service: ServiceProcess | None) -> int:
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    code = 0
    while not stopping:
        if service is not None and service.exited():
            code = service.stop() or 1
            print(f"service exited with {code}", file=sys.stderr)
            break
        time.sleep(0.2)
    if service is not None:
        service.stop()
    stack.stop()
    return code


if __name__ == "__main__":
    sys.exit(main())
