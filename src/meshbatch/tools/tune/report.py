"""What `tune` shows: a rich table of the candidates and a PNG of the throughput/latency trade-off."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from meshbatch.tools.fit import Cell, Column, fit_table
from meshbatch.tools.tune.sim import CostModel
from meshbatch.tools.tune.sweep import Outcome
from meshbatch.tools.tune.trace import Trace

COLUMNS = (
    Column("max\nitems", required=True), Column("wait\nms", required=True), Column("in\nflight", keep=80),
    Column("p50\nms", keep=50), Column("p99\nms", required=True), Column("max\nms", keep=20),
    Column("mean\nbatch", keep=60), Column("upstream\ncalls/s", keep=40), Column("items/s", keep=35),
    Column("capacity\nitems/s", keep=90), Column("upstream\nbusy", keep=70), Column("callers\nexpired", keep=30),
    Column("note", "left", required=True, label=True),
)


def table(outcomes: Sequence[Outcome], best: Outcome, target_ms: float, largest: int = 0, limit: int = 40,
          width: int = 200) -> Table:
    """The candidates, best first (meeting the target, then by p99); the current and recommended marked; a capacity
    resting on batch sizes beyond `largest` (the largest recorded) is marked as extrapolated (*). Fitted to
    `width` columns: the least telling columns go first (meshbatch.tools.fit)."""
    shown = sorted(outcomes, key=lambda o: (not o.meets(target_ms), o is not best, -o.capacity, o.p99_ms))[:limit]
    rows: list[list[Cell]] = []
    for o in shown:
        marks = []
        if o is best:
            marks.append(("recommended", "bold green"))
        if o.current:
            marks.append(("current", "cyan"))
        style = "" if o.meets(target_ms) else "dim"
        note = Text(", ").join(Text(word, style=mark) for word, mark in marks)
        cells: list[Cell] = [
            str(o.max_items), f"{o.wait_ms:g}", str(o.max_in_flight), f"{o.p50_ms:.2f}",
            Text(f"{o.p99_ms:.2f}", style="" if o.p99_ms <= target_ms else "red"), f"{o.max_ms:.1f}",
            f"{o.mean_batch:.1f}", f"{o.calls_per_s:,.0f}", f"{o.items_per_s:,.0f}",
            f"{o.capacity:,.0f}" + ("*" if largest and o.max_items > largest else ""), f"{o.busy:.0%}",
            str(o.expired), note]
        rows.append([Text(c, style=style) if isinstance(c, str) else c for c in cells])
    return fit_table(f"candidates replayed against the trace (target p99 {target_ms:g} ms)", COLUMNS, rows, width)


def summary(trace: Trace, cost: CostModel) -> Table:
    out = Table(title=f"recorded trace: route {trace.route}", title_justify="left", show_header=False)
    out.add_column("what")
    out.add_column("value")
    policy = trace.policy
    out.add_row("arrivals", f"{len(trace.arrivals):,} items over {trace.span:.2f}s ({trace.rate:,.0f} items/s)")
    out.add_row("batches", f"{len(trace.batches):,} (mean size {trace.mean_batch():.1f})")
    out.add_row("as recorded", f"p50 {trace.recorded_p(0.5) * 1000:.2f} ms, p99 {trace.recorded_p(0.99) * 1000:.2f} ms "
                               "(item arrival to batch answer)")
    out.add_row("upstream cost", f"t(n) = {cost.fixed * 1000:.3f} ms + {cost.per_item * 1000:.4f} ms x n "
                                 f"(fitted on {len(cost.residuals)} batches)")
    keys = ("max_items", "min_wait_ms", "max_wait_ms", "max_in_flight")
    current = ", ".join(f"{key} {policy.get(key)}" for key in keys)
    out.add_row("current policy", current + (" (adaptive)" if policy.get("adaptive") else ""))
    return out


def _capacity(outcome: Outcome) -> float:
    return outcome.capacity


def _busy_percent(outcome: Outcome) -> float:
    return outcome.busy * 100


def _scale(axis: Any, values: Sequence[float], which: str) -> None:
    """Log scale only for values that span more than a factor of 20."""
    positive = [v for v in values if v > 0]
    if positive and max(positive) / min(positive) > 20:
        (axis.set_xscale if which == "x" else axis.set_yscale)("log")


def plot(outcomes: Sequence[Outcome], best: Outcome, target_ms: float, trace: Trace, path: str | Path) -> None:
    """Three panels against the simulated p99 of every candidate (colour = max_items): capacity (throughput it can
    carry), upstream busy share (what the wait buys), and p99 by wait; the target and the recommendation marked."""
    from meshbatch import extras

    matplotlib = extras.import_module("matplotlib", "demo", "the plot of meshbatch tune")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(16, 4.8))
    sizes = sorted({o.max_items for o in outcomes})
    cmap = plt.get_cmap("viridis", max(len(sizes), 2))
    current = [o for o in outcomes if o.current]
    for index, size in enumerate(sizes):
        group = [o for o in outcomes if o.max_items == size]
        label = f"max_items {size}"
        left.scatter([o.p99_ms for o in group], [o.capacity for o in group], color=cmap(index), s=28, label=label)
        middle.scatter([o.p99_ms for o in group], [o.busy * 100 for o in group], color=cmap(index), s=28, label=label)
        by_wait = sorted(group, key=lambda o: (o.max_in_flight, o.wait_ms))
        right.plot([o.wait_ms for o in by_wait], [o.p99_ms for o in by_wait], marker="o", ms=3, color=cmap(index),
                   label=label)
    pick: list[tuple[Any, Callable[[Outcome], float]]] = [(left, _capacity), (middle, _busy_percent)]
    for axis, y in pick:
        axis.axvline(target_ms, color="#c8413b", linestyle="--", linewidth=1, label=f"target p99 {target_ms:g} ms")
        axis.scatter([best.p99_ms], [y(best)], marker="*", s=280, facecolor="none", edgecolor="#c8413b",
                     linewidth=1.6, zorder=5, label="recommended")
        if current:
            axis.scatter([current[0].p99_ms], [y(current[0])], marker="s", s=90, facecolor="none", edgecolor="black",
                         zorder=5, label="current")
        axis.set_xlabel("simulated p99 latency, ms")
        _scale(axis, [o.p99_ms for o in outcomes] + [target_ms], "x")
        axis.grid(True, alpha=0.3)
    left.set_ylabel("capacity, items/s")
    left.set_title("throughput it can carry vs latency")
    _scale(left, [o.capacity for o in outcomes], "y")
    left.legend(fontsize=7, loc="best")
    middle.set_ylabel("upstream busy, % of slot time")
    middle.set_title(f"upstream load at {trace.rate:,.0f} items/s")
    right.axhline(target_ms, color="#c8413b", linestyle="--", linewidth=1)
    right.set_xlabel("wait (min_wait_ms), ms")
    right.set_ylabel("simulated p99 latency, ms")
    _scale(right, [o.p99_ms for o in outcomes] + [target_ms], "y")
    right.set_title("p99 by wait")
    right.grid(True, alpha=0.3)
    fig.suptitle(f"meshbatch tune: route {trace.route}; recommended max_items {best.max_items}, "
                 f"wait {best.wait_ms:g} ms, in flight {best.max_in_flight}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


__all__ = ["plot", "summary", "table"]
