"""PNG plots of the `batching` scenario (matplotlib figures drawn off-screen, no pyplot state).

    batching.png              per work model: items/s vs concurrency, and items/s vs p99 (the equal-p99 reading)
    batching_latency_cdf.png  per work model: latency CDFs, open loop at the common rate and closed loop at the
                              largest concurrency
    batching_batch_sizes.png  per work model: histograms of batch sizes at the largest concurrency
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

COLORS = {"direct": "#888888", "meshbatch": "#e8590c", "ray-serve": "#1c7ed6", "bentoml": "#2b8a3e"}


def _color(name: str) -> str:
    return COLORS.get(name, "#555555")


def throughput(data: dict[str, Any], path: Path) -> Path:
    models = data["settings"]["models"]
    target_ms = data["settings"]["p99_target_ms"]
    fig = Figure(figsize=(11, 4.2 * len(models)))
    axes = fig.subplots(len(models), 2, squeeze=False)
    for row, model in zip(axes, models, strict=True):
        ax_t, ax_p = row
        by_conc = data["models"][model]["by_concurrency"]
        xs = [int(c) for c in by_conc]
        for name in data["targets"]:
            summaries = [by_conc[str(c)][name]["items_per_s"] for c in xs]
            med = [s["median"] or 0 for s in summaries]
            low = [(s["median"] - s["min"]) if s["n"] else 0 for s in summaries]
            high = [(s["max"] - s["median"]) if s["n"] else 0 for s in summaries]
            ax_t.errorbar(xs, med, yerr=[low, high], fmt="o-", color=_color(name), label=name, capsize=3)
            p99 = [by_conc[str(c)][name]["p99_ms"]["median"] for c in xs]
            pts = [(p, t) for p, t in zip(p99, med, strict=True) if p is not None and t > 0]
            if pts:
                ax_p.plot([p for p, _ in pts], [t for _, t in pts], "o-", color=_color(name), label=name)
                for (p, t), c in zip(pts, xs, strict=False):
                    ax_p.annotate(str(c), (p, t), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax_p.axvline(target_ms, color="#c92a2a", linestyle=":", label=f"p99 target {target_ms:g} ms")
        ax_t.set_xscale("log", base=2)
        ax_t.set_xticks(xs, [str(x) for x in xs])
        ax_t.set_xlabel("concurrent callers (closed loop)")
        ax_t.set_ylabel("items/s (median, min-max)")
        ax_t.set_yscale("log")
        ax_t.set_title(f"{model}: throughput vs concurrency")
        ax_p.set_xscale("log")
        ax_p.set_yscale("log")
        ax_p.set_xlabel("p99 latency ms (median; labels: callers)")
        ax_p.set_ylabel("items/s (median)")
        ax_p.set_title(f"{model}: throughput vs p99")
        for ax in (ax_t, ax_p):
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
    fig.suptitle(f"batching: {data['settings']['repeat']} round(s), {data['machine']['cpu_model']} "
                 f"({data['machine']['date'][:10]}), shared machine", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def _cdf_axis(ax: Any, curves: dict[str, list[list[float]]], title: str) -> None:
    for name, cdf in curves.items():
        if cdf:
            ax.plot([p[0] for p in cdf], [p[1] for p in cdf], color=_color(name), label=name)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("latency ms")
    ax.set_ylabel("fraction of requests")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")


def latency_cdf(data: dict[str, Any], path: Path) -> Path:
    models = data["settings"]["models"]
    top = max(data["settings"]["concurrency"])
    fig = Figure(figsize=(11, 4 * len(models)))
    axes = fig.subplots(len(models), 2, squeeze=False)
    for row, model in zip(axes, models, strict=True):
        entry = data["models"][model]
        common = entry["open_loop"].get("common", {})
        rate = next((o["rate"]["median"] for o in common.values() if o["rate"]["median"]), None)
        _cdf_axis(row[0], {n: o.get("cdf_ms", []) for n, o in common.items()},
                  f"{model}: open loop at {rate or 0:,.0f} items/s (common light rate)")
        _cdf_axis(row[1], entry["closed_cdf_at_top"], f"{model}: closed loop, {top} callers")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def batch_sizes(data: dict[str, Any], path: Path) -> Path:
    models = data["settings"]["models"]
    top = max(data["settings"]["concurrency"])
    fig = Figure(figsize=(11, 3.6 * len(models)))
    axes = fig.subplots(len(models), 1, squeeze=False)
    for (ax,), model in zip(axes, models, strict=True):
        sizes = data["models"][model]["batch_sizes_at_top"]
        largest = int(data["settings"]["batch"]["max_batch_size"])
        width = max(1, largest // 32)
        edges = [0.5 + i * width for i in range(largest // width + 2)]
        for name in data["targets"]:
            hist = sizes.get(name) or {}
            total = sum(hist.values())
            if not total:
                continue
            xs = [int(k) for k in hist]
            weights = [hist[str(x)] / total for x in xs]
            mean = sum(x * w for x, w in zip(xs, weights, strict=True))
            ax.hist(xs, bins=edges, weights=weights, histtype="step", linewidth=1.6, color=_color(name),
                    label=f"{name} (mean {mean:.1f} items, by call)")
        ax.set_xlabel("batch size (items per call of the work)")
        ax.set_ylabel("fraction of calls")
        ax.set_yscale("log")
        ax.set_title(f"{model}: batch sizes at {top} callers (all rounds)", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def plot(data: dict[str, Any], out_dir: Path) -> list[Path]:
    return [
        throughput(data, out_dir / "batching.png"),
        latency_cdf(data, out_dir / "batching_latency_cdf.png"),
        batch_sizes(data, out_dir / "batching_batch_sizes.png"),
    ]
