"""`python -m bench`: every figure of the issue in one run, side by side, on this machine.

Starts the local stack and the service exactly as the Procfile does (gunicorn.conf.py defaults),
the original design's direct call beside it (bench/baseline_app.py, same gunicorn config and
environment), drives load from a separate load generator process over loopback, then prints a
table, writes bench/results/latest.json and bench/results/latency.png.

Everything is measured in one run and compared as ratios because a 2-core machine is noisy:
a figure from another run, another hour, is not comparable.

    .venv/bin/python -m bench            # the default run, about 10 minutes on 2 cores
    .venv/bin/python -m bench --quick    # a smoke run under a minute, every code path, small counts
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import runpy
import sys
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench import direct, history, machine, memory, pipeline, plot, report, targets
from bench.config import MEASURED_DEFAULTS, QUICK, BenchConfig, service_setting
from bench.fixtures import create_virtual_users
from bench.harness import BenchEnvironment, bench_environment
from devstack.service_process import REPO_ROOT, procfile_command
from server.settings import load_settings

PHASES = ("pipeline", "direct", "capacity", "memory", "history")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: small counts, under a minute")
    parser.add_argument("--model-latency-ms", type=float, nargs="+", default=None, metavar="MS",
                        help="fake model latencies to run the pipeline and direct figures at (default: 0 1000)")
    parser.add_argument("--skip", nargs="+", choices=PHASES, default=[], help="leave these figures out")
    parser.add_argument("--output-dir", type=Path, default=REPO_ROOT / "bench" / "results")
    parser.add_argument("--service-env", nargs="+", default=[], metavar="NAME=VALUE", type=service_setting,
                        help="run the service (and the baseline) with these settings, to see what one costs, "
                             "e.g. --service-env STREAM_REPLIES=false")
    return parser.parse_args(argv)


def service_description(environment: BenchEnvironment) -> dict[str, Any]:
    """The serving set-up as measured: gunicorn.conf.py evaluated with the service's environment."""
    previous = dict(os.environ)
    os.environ.update(environment.env)
    try:
        gunicorn = runpy.run_path(str(REPO_ROOT / "gunicorn.conf.py"))
    finally:
        os.environ.clear()
        os.environ.update(previous)
    settings = load_settings({key.lower(): value for key, value in environment.env.items()})
    return {
        "command": " ".join(procfile_command()),
        "workers": gunicorn["workers"],
        "threads": gunicorn["threads"],
        "worker_class": gunicorn["worker_class"],
        "reply_concurrency": settings.reply_concurrency,
        "reply_queue_size": settings.reply_queue_size,
        "chat_poll_interval_seconds": settings.chat_poll_interval_seconds,
        "bench_settings": {key: environment.env[key] for key in ("APP_ENV", "LOG_LEVEL")},
    }


def loadgen_peak(results: dict[str, Any]) -> dict[str, float]:
    """The busiest the load generator got over the whole run."""
    found: list[dict[str, float]] = [level["loadgen"] for level in results.get("pipeline") or []]
    for level in [*(results.get("direct") or []), *((results.get("capacity") or {}).get("steps") or [])]:
        found += [level[side]["loadgen"] for side in direct.SIDES if side in level]
    if results.get("memory"):
        found.append(results["memory"]["loadgen"])
    if not found:
        return {}
    return {key: max(entry[key] for entry in found) for key in found[0]}


def measured_windows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The CPU record of every load generator run, whatever figure it belongs to."""
    found = [level["cpu"] for level in results.get("pipeline") or []]
    for level in [*(results.get("direct") or []), *((results.get("capacity") or {}).get("steps") or [])]:
        found += [level[side]["cpu"] for side in direct.SIDES if side in level]
    if results.get("memory"):
        found.append(results["memory"]["cpu"])
    return found


def disturbance(results: dict[str, Any]) -> dict[str, float]:
    """How much of the machine processes outside this run took while it measured: on a shared
    machine this is the first thing to check before believing a figure."""
    windows = [cpu for cpu in measured_windows(results) if cpu.get("window_seconds")]
    cores = os.cpu_count() or 1
    if not windows:
        return {}
    shares = [cpu["seconds"].get("other", 0.0) / (cpu["window_seconds"] * cores) for cpu in windows]
    total = sum(cpu["seconds"].get("other", 0.0) for cpu in windows) / (sum(cpu["window_seconds"] for cpu in windows) * cores)
    return {"other_share_overall": round(total, 3), "other_share_worst_run": round(max(shares), 3)}


def run_phases(environment: BenchEnvironment, config: BenchConfig, skip: list[str], results: dict[str, Any]) -> None:
    started = time.monotonic()
    at_start = memory.worker_rss(environment)
    results["service"]["workers_running"] = len(at_start)
    needed = config.virtual_users_needed
    ours = create_virtual_users(environment, needed, "bench: POST /api/chat")
    theirs = create_virtual_users(environment, needed, "bench: baseline")
    conversations = create_virtual_users(environment, max(config.pipeline_concurrency), "bench: pipeline")
    long_ones = create_virtual_users(environment, len(config.history_sizes), "bench: history")
    print(f"[{time.monotonic() - started:5.0f}s] {len(ours) + len(theirs) + len(conversations) + len(long_ones)}"
          " conversations ready", flush=True)
    phases: dict[str, Callable[[], Any]] = {
        "pipeline": lambda: pipeline.run(environment, config, conversations),
        "direct": lambda: direct.run_comparison(environment, config, ours, theirs),
        "capacity": lambda: direct.run_capacity(environment, config, ours, theirs),
        "memory": lambda: memory.run(environment, config, ours, at_start),
        "history": lambda: history.run(environment, config, long_ones),
    }
    for name, phase in phases.items():
        if name in skip:
            continue
        print(f"[{time.monotonic() - started:5.0f}s] {name}", flush=True)
        try:
            results[name] = phase()
        except Exception as error:  # one figure failing must not lose the others
            traceback.print_exc()
            results.setdefault("phase_errors", {})[name] = f"{type(error).__name__}: {error}"
            environment.enable_webhook(True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = QUICK if args.quick else BenchConfig()
    if args.model_latency_ms:
        config = config.with_model_latencies(tuple(args.model_latency_ms))
    for name in MEASURED_DEFAULTS:
        if os.environ.pop(name, None) is not None:
            print(f"note: ignoring {name} from the environment: the benchmark measures gunicorn.conf.py's default")
    started = time.monotonic()
    results: dict[str, Any] = {
        "generated_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join([Path(sys.executable).name, "-m", "bench", *(argv if argv is not None else sys.argv[1:])]),
        "config": dataclasses.asdict(config),
        "machine": machine.describe(),
    }
    overrides = dict(args.service_env)
    with bench_environment(with_baseline=True, **overrides) as environment:
        results["service"] = {**service_description(environment), "overrides": overrides}
        run_phases(environment, config, args.skip, results)
    results["run_seconds"] = round(time.monotonic() - started, 1)
    results["loadgen_peak"] = loadgen_peak(results)
    results["disturbance"] = disturbance(results)
    checks = targets.evaluate(results, config.model_latencies_ms, config.reference_model_latency_ms)
    print()
    print(report.table(results, checks))
    report.write_json(results, checks, args.output_dir / "latest.json")
    plot.plot(results, args.output_dir / "latency.png")
    print(f"\nwrote {args.output_dir / 'latest.json'} and {args.output_dir / 'latency.png'}")
    return 1 if results.get("phase_errors") else 0


if __name__ == "__main__":
    sys.exit(main())
