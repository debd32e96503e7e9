"""What POST /api/chat costs over the model's own latency: sequential requests from one signed-in
user, each timed end to end over loopback, minus the fake model's configured latency.

    .venv/bin/python -m bench.chat_overhead [--requests 100] [--model-latency-ms 0]
"""

from __future__ import annotations

import argparse
import statistics
import time

import httpx

from bench.harness import bench_environment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--model-latency-ms", type=float, default=0)
    args = parser.parse_args()
    with bench_environment() as environment:
        environment.set_model_latency(args.model_latency_ms)
        headers = {"Authorization": f"Bearer {environment.sign_up()}"}
        with httpx.Client(base_url=environment.service.url, headers=headers, timeout=60) as api:
            conversation = api.post("/api/conversations", json={"title": "bench"}).json()["id"]
            for n in range(5):  # warm-up
                api.post(f"/api/chat/{conversation}", json={"message": f"warm-up {n}"}).raise_for_status()
            latencies = []
            for n in range(args.requests):
                started = time.perf_counter()
                api.post(f"/api/chat/{conversation}", json={"message": f"request {n}"}).raise_for_status()
                latencies.append((time.perf_counter() - started) * 1000)
    latencies.sort()
    model = args.model_latency_ms
    print(f"POST /api/chat, {args.requests} sequential requests, model {model:.0f} ms")
    print(f"  median {statistics.median(latencies):7.1f} ms   (overhead {statistics.median(latencies) - model:6.1f} ms)")
    print(f"  p95    {latencies[int(0.95 * (len(latencies) - 1))]:7.1f} ms")
    print(f"  worst  {latencies[-1]:7.1f} ms   (overhead {latencies[-1] - model:6.1f} ms)")


if __name__ == "__main__":
    main()
