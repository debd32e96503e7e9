"""Figure 1 on its own: commit-to-commit reply latency at one concurrency and model latency.

The full benchmark (`python -m bench`) runs this beside every other figure; this script is for
looking at one level while working on the pipeline. Same measurement (bench/pipeline.py), same
separate load generator process.

    .venv/bin/python -m bench.reply_latency [--messages 100] [--concurrency 1] [--model-latency-ms 0]
"""

from __future__ import annotations

import argparse
import math
from dataclasses import replace

from bench.config import BenchConfig
from bench.fixtures import create_virtual_users
from bench.harness import bench_environment
from bench.pipeline import run_level


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100, help="measured messages in total")
    parser.add_argument("--concurrency", type=int, default=1, help="conversations sending at once")
    parser.add_argument("--model-latency-ms", type=float, default=0)
    args = parser.parse_args()
    per_conversation = max(1, math.ceil(args.messages / args.concurrency))
    config = replace(BenchConfig(), pipeline_messages_fast=args.messages, pipeline_messages_slow_sequential=per_conversation,
                     pipeline_rounds_slow=per_conversation)
    with bench_environment() as environment:
        environment.set_model_latency(args.model_latency_ms)
        conversations = create_virtual_users(environment, args.concurrency, "bench: reply latency")
        level = run_level(environment, config, conversations, args.model_latency_ms)
    overhead = level["overhead_ms"]
    print(f"median {overhead['p50']:.1f} ms, worst {overhead['max']:.1f} ms of {overhead['n']} (overhead over the model);"
          f" throughput {level['throughput_rps']:.1f} messages/s; errors {level['errors'] or 0}")


if __name__ == "__main__":
    main()
