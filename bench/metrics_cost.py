"""`python -m bench.metrics_cost`: what /metrics costs the pipeline's throughput.

Two services on one local stack, as the Procfile runs them: one with neither METRICS_TOKEN nor
METRICS_PORT (nothing is counted) and one counting everything, scraped once a second while it
works (fifteen times Prometheus' default interval, and Fly.io's). Both answer the same load (the
pipeline figure: 16 conversations, the fake model at 0 ms, so the service's own CPU is all there
is to see), the webhook pointed at each in turn, alternated `--repeats` times so the machine's
noise falls on both sides, each run with conversations of its own (a message one run leaves
unanswered would hold up its conversation's next). Three figures: the throughput and the
service's CPU per answered message (medians over the runs; CPU is what a shared machine disturbs
less), and, in this process, what counting one reply and rendering one scrape cost on their own.
Writes bench/results/metrics.json.

    .venv/bin/python -m bench.metrics_cost            # about a minute on 2 cores
    .venv/bin/python -m bench.metrics_cost --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench import pipeline
from bench.config import BenchConfig
from bench.fixtures import create_virtual_users
from bench.harness import BenchEnvironment, bench_environment
from devstack.service_process import REPO_ROOT, ServiceProcess
from devstack.serving import free_port

TOKEN = "bench-metrics-token"
SCRAPE_INTERVAL_SECONDS = 1.0
CONVERSATIONS = 16


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.metrics_cost", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: small counts")
    parser.add_argument("--repeats", type=int, default=None, help="alternations of the two sides (default 4)")
    parser.add_argument("--output-dir", type=Path, default=REPO_ROOT / "bench" / "results")
    known, _ = parser.parse_known_args(argv)
    return known


class Scraper:
    """GET /metrics every interval until stopped; counts the scrapes and anything but a 200."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.scrapes = 0
        self.failures = 0
        self.bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Scraper:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        with httpx.Client(timeout=10, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            while not self._stop.wait(SCRAPE_INTERVAL_SECONDS):
                response = client.get(f"{self.url}/metrics")
                self.scrapes += 1
                self.bytes = len(response.content)
                if response.status_code != 200:
                    self.failures += 1


def measure(environment: BenchEnvironment, config: BenchConfig, users: list[Any], scraped: bool) -> dict[str, Any]:
    environment.stack.configure_webhook(f"{environment.service.url}/webhooks/messages")
    scraper = Scraper(environment.service.url)
    if scraped:
        with scraper:
            level = pipeline.run_level(environment, config, users, 0.0)
    else:
        level = pipeline.run_level(environment, config, users, 0.0)
    run = {"throughput_rps": level["throughput_rps"], "overhead_p50_ms": level["overhead_ms"]["p50"],
           "service_cpu_ms_per_message": level["cpu"]["ms_per_request"].get("service"),
           "other_processes_cpu_seconds": level["cpu"]["seconds"].get("other"), "errors": level["errors"]}
    if scraped:
        run.update(scrapes=scraper.scrapes, scrape_failures=scraper.failures, scrape_bytes=scraper.bytes)
    return run


def median_of(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(run[key] for run in runs if run[key] is not None))


def micro() -> dict[str, float]:
    """Counting one streamed reply's worth (a delivery, a model call, the first token, the tokens,
    the reply) and rendering one scrape, in a fresh process's multiprocess folder."""
    import os
    import subprocess

    code = (
        "import time\n"
        "from adapters.prometheus_metrics import PrometheusMetrics\n"
        "import os\n"
        "m = PrometheusMetrics(count_pending=lambda: 3, multiprocess_dir=os.environ['PROMETHEUS_MULTIPROC_DIR'])\n"
        "for route in ('/webhooks/messages', '/api/chat/<conversation_id>', '/metrics', '/readyz'):\n"
        "    for status in (200, 202, 401, 503): m.http_request(route, 'POST', status)\n"
        "n = 20000; t = time.perf_counter()\n"
        "for _ in range(n):\n"
        "    m.webhook_delivery('accepted'); m.model_call('ok'); m.first_token(0.2); m.tokens(300, 200)\n"
        "    m.reply_finished('answered', 1.5); m.http_request('/webhooks/messages', 'POST', 202)\n"
        "reply_us = (time.perf_counter() - t) / n * 1e6\n"
        "n = 200; t = time.perf_counter()\n"
        "for _ in range(n): m.render()\n"
        "print(reply_us, (time.perf_counter() - t) / n * 1000)\n"
    )
    with tempfile.TemporaryDirectory(prefix="metrics-cost-") as folder:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT,
                             env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": folder}).stdout.split()
    return {"counting_us_per_reply": round(float(out[0]), 1), "render_ms_per_scrape": round(float(out[1]), 2)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 5)
    config = BenchConfig(pipeline_messages_fast=40 if args.quick else 320)  # about 10 s a run: no cut-offs
    with bench_environment() as plain:
        counting = ServiceProcess({**plain.env, "METRICS_TOKEN": TOKEN}, port=free_port(),
                                  log_path=plain.state_dir / "service-metrics.log").start()
        try:
            metered = dataclasses.replace(plain, service=counting)
            plain.set_model_latency(0)
            users = create_virtual_users(plain, CONVERSATIONS * (2 * repeats + 1), "metrics cost")
            batches = [users[i * CONVERSATIONS:(i + 1) * CONVERSATIONS] for i in range(2 * repeats + 1)]
            plain.stack.configure_webhook(f"{plain.service.url}/webhooks/messages")
            pipeline.run_level(plain, config, batches[0][:4], 0.0)  # warm both up: connections, imports
            metered.stack.configure_webhook(f"{metered.service.url}/webhooks/messages")
            pipeline.run_level(metered, config, batches[0][4:8], 0.0)
            runs: dict[str, list[dict[str, Any]]] = {"without": [], "with": []}
            for repeat in range(repeats):
                runs["without"].append(measure(plain, config, batches[1 + 2 * repeat], scraped=False))
                runs["with"].append(measure(metered, config, batches[2 + 2 * repeat], scraped=True))
        finally:
            counting.stop()
    without = median_of(runs["without"], "throughput_rps")
    with_metrics = median_of(runs["with"], "throughput_rps")
    cost_percent = round((1 - with_metrics / without) * 100, 2)
    cpu_without = median_of(runs["without"], "service_cpu_ms_per_message")
    cpu_with = median_of(runs["with"], "service_cpu_ms_per_message")
    cpu_cost_percent = round((cpu_with / cpu_without - 1) * 100, 2)
    started = time.perf_counter()
    alone = micro()
    alone["measured_in_seconds"] = round(time.perf_counter() - started, 1)
    result = {
        "quick": args.quick,
        "conversations": CONVERSATIONS,
        "messages_per_run": config.pipeline_messages_fast,
        "scrape_interval_seconds": SCRAPE_INTERVAL_SECONDS,
        "median_throughput_rps": {"without_metrics": round(without, 1), "with_metrics_scraped": round(with_metrics, 1)},
        "cost_percent": cost_percent,
        "median_service_cpu_ms_per_message": {
            "without_metrics": round(cpu_without, 2), "with_metrics_scraped": round(cpu_with, 2)
        },
        "cpu_cost_percent": cpu_cost_percent,
        "alone": alone,
        "runs": runs,
    }
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n/metrics cost: pipeline throughput {without:.1f} msg/s without metrics, {with_metrics:.1f} msg/s counting "
          f"and scraped every {SCRAPE_INTERVAL_SECONDS:.0f} s: {cost_percent:+.2f}% (median of {repeats} alternations)")
    print(f"service CPU per message: {cpu_without:.2f} ms without, {cpu_with:.2f} ms with: {cpu_cost_percent:+.2f}%")
    print(f"alone: counting a reply {alone['counting_us_per_reply']} us "
          f"({alone['counting_us_per_reply'] / 10 / cpu_without:.2f}% of a message's {cpu_without:.2f} ms), "
          f"rendering a scrape {alone['render_ms_per_scrape']} ms")
    print(f"wrote {args.output_dir / 'metrics.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
