"""bench/results/latency.png: latency percentiles against concurrency, ours beside the baseline.

Headless (Agg): the benchmark runs on CI-like machines with no display. Overheads (latency minus
the model's) are drawn on log scales because they span from a few milliseconds to seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

FLOOR_MS = 0.5  # log axes cannot show 0 or less; overheads below this are drawn at it
PERCENTILES = (("p50", "-"), ("p95", "--"), ("p99", ":"))
SIDE_COLOURS = {"service": "tab:blue", "baseline": "tab:orange"}


def direct_points(results: dict[str, Any], model_ms: float) -> dict[int, dict[str, Any]]:
    """POST /api/chat levels and capacity steps at one model latency, by concurrency."""
    points = {level["concurrency"]: level for level in results.get("direct") or [] if level["model_latency_ms"] == model_ms}
    capacity = results.get("capacity") or {}
    if capacity.get("model_latency_ms") == model_ms:
        for step in capacity["steps"]:
            points.setdefault(step["concurrency"], step)
    return dict(sorted(points.items()))


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    latencies = results["config"]["model_latencies_ms"]
    figure, axes = plt.subplots(1, 1 + len(latencies), figsize=(6 * (1 + len(latencies)), 5), squeeze=False)
    pipeline_axis = axes[0][0]
    for index, model_ms in enumerate(latencies):
        levels = [level for level in results.get("pipeline") or [] if level["model_latency_ms"] == model_ms]
        for name, style in PERCENTILES:
            pipeline_axis.plot([level["concurrency"] for level in levels],
                               [max(level["overhead_ms"][name], FLOOR_MS) for level in levels],
                               style, marker="o", color=f"C{index + 2}", label=f"{name}, model {model_ms:.0f} ms")
    pipeline_axis.set_title("Pipeline: user commit -> reply commit, minus model")
    for axis, model_ms in zip(axes[0][1:], latencies, strict=True):
        points = direct_points(results, model_ms)
        for side, colour in SIDE_COLOURS.items():
            xs = [c for c, point in points.items() if side in point]
            for name, style in PERCENTILES:
                axis.plot(xs, [max(points[c][side]["overhead_ms"][name], FLOOR_MS) for c in xs], style, marker="o",
                          color=colour, label=f"{'POST /api/chat' if side == 'service' else 'baseline'} {name}")
            failed = [c for c in xs if points[c][side]["error_count"]]
            axis.scatter(failed, [max(points[c][side]["overhead_ms"]["p99"], FLOOR_MS) for c in failed], marker="x",
                         s=80, color="red", zorder=5, label=f"{side}: errors" if failed else None)
        axis.set_title(f"Direct callers, model {model_ms:.0f} ms: latency minus model")
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    for axis in axes[0]:
        if not any(len(line.get_xdata()) for line in axis.get_lines()):
            axis.set_visible(False)  # a figure left out with --skip: nothing to draw on a log scale
            continue
        axis.set_xscale("log")
        axis.set_yscale("log")
        shown = sorted({int(x) for line in axis.get_lines() for x in line.get_xdata()})
        axis.set_xticks(shown)
        axis.xaxis.set_major_formatter(ScalarFormatter())
        axis.xaxis.set_minor_formatter(NullFormatter())
        axis.yaxis.set_major_formatter(ScalarFormatter())
        axis.yaxis.set_minor_formatter(NullFormatter())
        axis.set_xlabel("concurrent conversations / callers")
        axis.set_ylabel("overhead (ms)")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=7)
    machine = results["machine"]
    figure.suptitle(f"ai-chat-server bench, {machine['cores']} cores {machine['cpu_model']}, Python {machine['python']}"
                    f" ({results['generated_at']})", fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
