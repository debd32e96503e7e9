"""The printed table and bench/results/latest.json: every figure of one run, side by side."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from bench.targets import SATURATION_NOTE, Check


def fmt(value: float | None, width: int = 7, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-".rjust(width)
    return f"{value:{width}.{digits}f}"


def errors_text(errors: dict[str, int]) -> str:
    return ", ".join(f"{count} {kind}" for kind, count in errors.items()) if errors else "0"


def header(results: dict[str, Any]) -> list[str]:
    machine, service = results["machine"], results["service"]
    minutes, seconds = divmod(int(results["run_seconds"]), 60)
    loadgen = results.get("loadgen_peak") or {}
    disturbance = results.get("disturbance") or {}
    return [
        f"ai-chat-server bench ({'--quick smoke run' if results['config']['quick'] else 'default run'}),"
        f" {results['generated_at']}, took {minutes}m{seconds:02d}s",
        f"machine: {machine['cores']} cores ({machine['usable_cores']} usable), {machine['cpu_model']},"
        f" {machine['memory_gib']} GiB, Python {machine['python']} ({machine['platform']}),"
        f" load average at start {machine['load_average_at_start']}",
        f"service: `{service['command']}` (Procfile), {service['workers']} workers x {service['threads']} threads"
        f" (gunicorn.conf.py defaults), REPLY_CONCURRENCY {service['reply_concurrency']}"
        + "".join(f", {name}={value}" for name, value in (service.get("overrides") or {}).items()),
        "load: separate process `python -m bench.loadgen`, raw asyncio HTTP/1.1, one keep-alive connection per user;"
        f" its peak CPU {loadgen.get('cpu_share', 0) * 100:.0f}% of a core,"
        f" event-loop lag p99 <= {loadgen.get('loop_lag_p99_ms', 0):.1f} ms",
        f"other processes on the machine while measuring: {disturbance.get('other_share_overall', 0) * 100:.0f}% of all cores"
        f" overall, {disturbance.get('other_share_worst_run', 0) * 100:.0f}% in the worst run",
    ]


def pipeline_table(levels: list[dict[str, Any]]) -> list[str]:
    lines = ["", "1. Pipeline: user row commit -> reply row commit, minus the model's latency (ms)",
             "   model  conc  msgs      p50      p95      p99      max   msg/s  errors"]
    for level in levels:
        overhead = level["overhead_ms"]
        lines.append(f"  {level['model_latency_ms']:6.0f} {level['concurrency']:5d} {overhead['n']:5d}  {fmt(overhead['p50'], 7)}"
                     f"  {fmt(overhead['p95'], 7)}  {fmt(overhead['p99'], 7)}  {fmt(overhead['max'], 7)}"
                     f" {fmt(level['throughput_rps'], 7)}  {errors_text(level['errors'])}")
    return lines


def side_cells(result: dict[str, Any] | None) -> str:
    if result is None:
        return f"{'(stopped at its first failing step)':>44s}"
    overhead = result["overhead_ms"]
    return (f"{fmt(overhead['p50'])} {fmt(overhead['p95'])} {fmt(overhead['p99'])} {fmt(result['throughput_rps'], 7)}"
            f" {result['error_count']:5d}")


def direct_table(levels: list[dict[str, Any]]) -> list[str]:
    lines = ["", "2./3. POST /api/chat (ours) vs the original design's direct call (baseline): latency minus the model (ms);"
             " ratios ours/baseline of latency and requests/s",
             "   model  conc |   ours p50     p95     p99    rps  errs | base p50     p95     p99    rps  errs |"
             " lat p50  lat p99    rps"]
    for level in levels:
        ratio = level["ratio"]
        lines.append(f"  {level['model_latency_ms']:6.0f} {level['concurrency']:5d} | {side_cells(level['service'])} |"
                     f" {side_cells(level['baseline'])} | {fmt(ratio['latency_p50'], 7, 2)}  {fmt(ratio['latency_p99'], 7, 2)}"
                     f" {fmt(ratio['throughput'], 6, 2)}")
    return lines


def capacity_table(capacity: dict[str, Any]) -> list[str]:
    lines = ["", f"   Capacity, model {capacity['model_latency_ms']:.0f} ms, {capacity['rounds']} requests per caller per step;"
             f" a step passes with no error and p99 overhead <= {capacity['p99_overhead_bound_ms']:.0f} ms",
             "          conc |   ours p50     p95     p99    rps  errs pass | base p50     p95     p99    rps  errs pass"]
    for step in capacity["steps"]:
        cells = []
        for side in ("service", "baseline"):
            result = step.get(side)
            verdict = "" if result is None else ("yes" if result["passed"] else "NO")
            cells.append(f"{side_cells(result)} {verdict:>4s}")
        lines.append(f"         {step['concurrency']:5d} | {cells[0]} | {cells[1]}")
        for side in ("service", "baseline"):
            if step.get(side, {}).get("errors"):
                lines.append(f"                 {side} errors: {errors_text(step[side]['errors'])}")
    largest = capacity["largest_passing"]
    lines.append(f"   largest passing step: ours {largest['service']}, baseline {largest['baseline']}")
    return lines


def memory_table(memory: dict[str, Any]) -> list[str]:
    lines = ["", f"4. Memory: worker RSS (MB) around {memory['ok']:,} POST /api/chat at {memory['concurrency']} concurrent,"
             f" 0 ms model ({memory['throughput_rps']:.0f} req/s, errors {errors_text(memory['errors'])})",
             "      pid   start    rest   after  growth"]
    for worker in memory["workers"]:
        growth = worker["growth_pct"]
        lines.append(f"  {worker['pid']:7d} {fmt(worker['rss_at_start_mb'])} {fmt(worker['rss_at_rest_mb'])}"
                     f" {fmt(worker['rss_after_mb'])} {'-' if growth is None else f'{growth:+.1f}%':>7s}")
    if memory["replaced_workers"]:
        lines.append(f"  workers replaced during the run: {memory['replaced_workers']}")
    return lines


def history_table(history: dict[str, Any]) -> list[str]:
    lines = ["", f"5. Context building: fetch_message_context through the gateway, median of {history['calls']} calls (ms);"
             f" plus {history['background_conversations']:,} small background conversations",
             "   messages  in context   median      p95   SQL alone (median)"]
    for entry in history["sizes"]:
        lines.append(f"  {entry['messages']:9,d}  {entry['context_messages']:10d}  {fmt(entry['fetch_context_median_ms'], 7, 2)}"
                     f"  {fmt(entry['fetch_context_p95_ms'], 7, 2)}  {fmt(entry['sql_median_ms'], 7, 2)}")
    lines.append(f"   ratio largest/smallest: x{history['ratio_largest_to_smallest']:.2f}"
                 f" (SQL alone x{history['sql_ratio_largest_to_smallest']:.2f});"
                 f" plan: {'; '.join(history['largest_plan_scans'])}")
    return lines


def targets_table(checks: list[Check]) -> list[str]:
    lines = ["", "Targets"]
    for check in checks:
        verdict = "n/a " if check.passed is None else ("PASS" if check.passed else "MISS")
        marker = "*" if check.informational else " "
        lines.append(f"  {verdict}{marker} {check.name}: {check.measured}  [target {check.target}]")
    if any(check.informational for check in checks):
        lines.append(f"  * {SATURATION_NOTE}")
    return lines


def cpu_row(figure: str, level: dict[str, Any], side: str, result: dict[str, Any]) -> str:
    cpu = result.get("cpu") or {}
    per = cpu.get("ms_per_request") or {}
    workers = sorted((cpu.get("service_worker_seconds") or {}).values(), reverse=True)
    split = "/".join(f"{value / sum(workers) * 100:.0f}" for value in workers) + "%" if sum(workers) > 0 else "-"
    own = per.get("service" if side == "service" else "baseline")
    busy = cpu.get("machine_busy_share", 0) * 100
    window = cpu.get("window_seconds") or 0
    other = (cpu.get("seconds") or {}).get("other", 0) / (window * (os.cpu_count() or 1)) * 100 if window else 0.0
    return (f"  {figure:<9s} {level['model_latency_ms']:6.0f} {level['concurrency']:5d} {side:<8s} {busy:5.0f}%"
            f"  {fmt(own, 8, 2)}  {fmt(per.get('stack'), 9, 2)}  {fmt(per.get('postgres'), 8, 2)}"
            f"  {fmt(per.get('loadgen'), 7, 2)}  {split if side == 'service' else '':>9s}  {other:5.0f}%")


def cpu_table(results: dict[str, Any]) -> list[str]:
    lines = ["", "   Where the CPU went: machine busy = share of all cores during the run; then CPU ms per answered request in",
             "   the server under test (ours or baseline), the stand-ins (gateway, pg_net, fake model: one process),",
             "   Postgres and the load generator; split = CPU share of each of our gunicorn workers; other = share of all",
             "   cores used by processes that are not part of this run (another job on the machine disturbs the figures)",
             "   figure     model  conc side       busy    server  stand-ins  postgres  loadgen     split  other"]
    for level in results.get("pipeline") or []:
        lines.append(cpu_row("pipeline", level, "service", level))
    for figure, levels in (("direct", results.get("direct") or []),
                           ("capacity", (results.get("capacity") or {}).get("steps") or [])):
        for level in levels:
            lines += [cpu_row(figure, level, side, level[side]) for side in ("service", "baseline") if side in level]
    if results.get("memory"):
        memory = results["memory"]
        lines.append(cpu_row("memory", {"model_latency_ms": 0.0, "concurrency": memory["concurrency"]}, "service", memory))
    return lines


def table(results: dict[str, Any], checks: list[Check]) -> str:
    lines = header(results)
    if results.get("pipeline"):
        lines += pipeline_table(results["pipeline"])
    if results.get("direct"):
        lines += direct_table(results["direct"])
    if results.get("capacity"):
        lines += capacity_table(results["capacity"])
    lines += cpu_table(results)
    if results.get("memory"):
        lines += memory_table(results["memory"])
    if results.get("history"):
        lines += history_table(results["history"])
    for phase, error in (results.get("phase_errors") or {}).items():
        lines.append(f"\n{phase} failed: {error}")
    lines += targets_table(checks)
    return "\n".join(lines)


def write_json(results: dict[str, Any], checks: list[Check], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**results, "targets": [check.to_json() for check in checks]}, indent=1) + "\n")
