"""A picture of the demo's two runs: throughput side by side, and the latency distribution of each."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from meshbatch.demo.producer import RunResult


def plot_runs(results: Sequence[RunResult], path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    names = [r.name for r in results]
    rates = [r.rate for r in results]
    bars = left.bar(range(len(results)), rates, color=["#8a8a8a", "#2b7bba"][: len(results)])
    left.set_xticks(range(len(results)), [n.replace(": ", ":\n").replace(" (", "\n(") for n in names], fontsize=8)
    left.set_ylabel("events stored per second")
    left.set_title("throughput")
    for bar, result in zip(bars, results, strict=True):
        calls = result.upstream_calls or 1
        left.annotate(f"{result.rate:,.0f}/s\n{result.ok / calls:.1f} events/call",
                      (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=8)
    for result in results:
        latencies = sorted(x * 1000 for x in result.latencies)
        if latencies:
            n = len(latencies)
            right.plot(latencies, [(i + 1) / n for i in range(n)], label=result.name)
    right.set_xscale("log")
    right.set_xlabel("latency per event, ms (log)")
    right.set_ylabel("fraction of events")
    right.set_title("latency CDF")
    right.grid(True, which="both", alpha=0.3)
    right.legend(fontsize=8, loc="lower right")
    fig.suptitle("meshbatch demo: the same producers, direct vs through the batching proxy")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


__all__ = ["plot_runs"]
