"""Figure 2 on its own: what POST /api/chat costs over the model's latency, at one concurrency,
optionally beside the baseline (the original design's direct call).

The full benchmark (`python -m bench`) runs this beside every other figure; this script is for
looking at one level while working on the REST door. Same measurement (bench/direct.py), same
separate load generator process.

    .venv/bin/python -m bench.chat_overhead [--requests 100] [--concurrency 1] [--model-latency-ms 0] [--baseline]
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from bench.direct import compare, merge, print_level, run_side
from bench.fixtures import create_virtual_users
from bench.harness import bench_environment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=100, help="measured requests in total")
    parser.add_argument("--concurrency", type=int, default=1, help="callers waiting at once")
    parser.add_argument("--model-latency-ms", type=float, default=0)
    parser.add_argument("--baseline", action="store_true", help="run the baseline too, and print the ratios")
    args = parser.parse_args()
    rounds = max(1, math.ceil(args.requests / args.concurrency))
    model_ms = args.model_latency_ms
    with bench_environment(with_baseline=args.baseline) as environment:
        environment.set_model_latency(model_ms)
        sides = ("service", "baseline") if args.baseline else ("service",)
        level: dict[str, Any] = {"model_latency_ms": model_ms, "concurrency": args.concurrency}
        for side in sides:
            users = create_virtual_users(environment, args.concurrency, f"bench: {side}")
            run_side(environment, side, users[:1], 2, model_ms, "warm-up")
            level[side] = merge([run_side(environment, side, users, rounds, model_ms, side)], model_ms)
    print_level("direct", level)
    overhead = level["service"]["overhead_ms"]
    print(f"POST /api/chat overhead over the model: median {overhead['p50']:.1f} ms, worst {overhead['max']:.1f} ms"
          f" of {overhead['n']}")
    if args.baseline:
        print(f"  ours/baseline: {compare(level['service'], level['baseline'])}")


if __name__ == "__main__":
    main()
