"""`python -m devstack.fake_openai --host 127.0.0.1 --port 54330 --latency-ms 0`."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import uvicorn

from devstack.fake_openai.app import create_fake_openai
from devstack.fake_openai.state import LATENCY_ENV_VAR, FakeModelState, latency_ms_from_env, validate_latency


def build_arg_parser() -> argparse.ArgumentParser:
    """CLI flags for ``python -m devstack.fake_openai``."""
    parser = argparse.ArgumentParser(
        prog="python -m devstack.fake_openai", description="Fake OpenAI-compatible server for the local dev stack."
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=54330, help="port to bind (default: 54330)")
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=None,
        help=f"default simulated latency in ms (default: ${LATENCY_ENV_VAR} or 0)",
    )
    parser.add_argument("--log-level", default="warning", help="uvicorn log level (default: warning)")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: parse flags and serve until interrupted."""
    parser = build_arg_parser()
    args = parser.parse_args(argv)
    try:
        latency_ms = latency_ms_from_env() if args.latency_ms is None else validate_latency(args.latency_ms)
    except ValueError as exc:
        parser.error(str(exc))
    app = create_fake_openai(FakeModelState(default_latency_ms=latency_ms))
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
