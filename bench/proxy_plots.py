"""PNG plots of the `proxy` scenario (matplotlib figures drawn off-screen, no pyplot state)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

COLORS = {"no proxy": "#888888", "nginx": "#2b8a3e", "haproxy": "#1c7ed6", "meshbatch": "#e8590c"}


def _errors(summaries: list[dict[str, Any]], scale: float = 1.0) -> list[list[float]]:
    """Asymmetric error bars (below, above the median) from min-max."""
    lows = [(s["median"] - s["min"]) * scale if s["n"] else 0.0 for s in summaries]
    highs = [(s["max"] - s["median"]) * scale if s["n"] else 0.0 for s in summaries]
    return [lows, highs]


def closed_loop(data: dict[str, Any], path: Path) -> Path:
    targets = data["targets"]
    summary = data["closed_loop"]["summary"]
    colors = [COLORS.get(t, "#555555") for t in targets]
    fig = Figure(figsize=(11, 4.2))
    ax_rps, ax_lat = fig.subplots(1, 2)
    rps = [summary[t]["rps"] for t in targets]
    ax_rps.bar(targets, [s["median"] or 0 for s in rps], yerr=_errors(rps), color=colors, capsize=4)
    ax_rps.set_ylabel("requests/s (median, min-max)")
    ax_rps.set_title("peak throughput, closed loop")
    width = 0.38
    xs = range(len(targets))
    for offset, field, alpha in ((-width / 2, "p50_ms", 0.55), (width / 2, "p99_ms", 1.0)):
        values = [summary[t][field] for t in targets]
        ax_lat.bar(
            [x + offset for x in xs],
            [v["median"] or 0 for v in values],
            width,
            yerr=_errors(values),
            color=colors,
            alpha=alpha,
            capsize=3,
            label=field.replace("_ms", ""),
        )
    ax_lat.set_xticks(list(xs), targets)
    ax_lat.set_ylabel("latency ms (median, min-max)")
    ax_lat.set_title("latency under peak load (p50 light, p99 dark)")
    settings = data["settings"]
    fig.suptitle(
        f"{data.get('scenario', 'proxy')}: wrk {settings['connections']} connections, {settings['repeat']} rounds, "
        f"{data['machine']['cpu_model']} ({data['machine']['date'][:10]})",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def open_loop_cdf(data: dict[str, Any], path: Path) -> Path:
    rates = data["settings"]["open_rates"]
    fig = Figure(figsize=(4.2 * len(rates), 4))
    axes = fig.subplots(1, len(rates), squeeze=False, sharey=True)
    for ax, rate in zip(axes[0], rates, strict=True):
        for target in data["targets"]:
            # One curve per target and rate: the run with the median p50.
            cdf = data["open_loop"]["by_rate"][f"{rate:g}"].get(target, {}).get("cdf_ms")
            if not cdf:
                continue
            ax.plot([p[0] for p in cdf], [p[1] for p in cdf], label=target, color=COLORS.get(target))
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(f"{rate:g} requests/s, open loop")
        ax.set_xlabel("latency ms (from scheduled send)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("fraction of requests")
    axes[0][-1].legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def plot(data: dict[str, Any], out_dir: Path) -> list[Path]:
    name = data.get("scenario", "proxy")  # `mtls` draws the same pictures for sidecar pairs
    paths = [closed_loop(data, out_dir / f"{name}_closed_loop.png")]
    if data["settings"]["open_rates"]:
        paths.append(open_loop_cdf(data, out_dir / f"{name}_open_loop_cdf.png"))
    return paths
