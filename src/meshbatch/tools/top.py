"""`meshbatch top --admin URL`: the dashboard's figures in a terminal (rich), refreshed live.

It polls the admin API's `/dashboard/feed` (the same JSON the web dashboard draws), so rates and windowed
percentiles come from the proxy's own one-second history and the first frame already shows them.
`--once` prints one frame and exits (for scripts); `--iterations N` refreshes N times and exits.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from meshbatch.tools.admin_client import AdminError, get_json, normalise

BLOCKS = " ▁▂▃▄▅▆▇█"
DASH = "-"
HEALTH_STYLE = {"healthy": "green", "ejected": "yellow", "degraded": "yellow", "unhealthy": "red"}
FLUSH_SHORT = {"items": "n", "bytes": "b", "wait": "w", "deadline": "d", "drain": "D"}
TREND = 40  # points in a sparkline


def sparkline(values: list[float | None], width: int = TREND) -> str:
    values = values[-width:]
    known = [v for v in values if v is not None]
    top = max(known) if known else 0.0
    steps = len(BLOCKS) - 1
    return "".join(" " if v is None else BLOCKS[max(1, round(v / top * steps)) if top > 0 else 1] for v in values)


def fmt(value: Any, digits: int | None = None) -> str:
    if value is None or not isinstance(value, int | float):
        return DASH
    if digits is None:
        digits = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2
    if abs(value) >= 1e6:
        return f"{value / 1e6:.1f}M"
    if abs(value) >= 1e4:
        return f"{value / 1e3:.1f}k"
    return f"{value:.{digits}f}"


class History:
    """The points seen so far (the feed sends only new ones after `since`)."""

    def __init__(self, keep: int = 300) -> None:
        self.keep = keep
        self.seq = 0
        self.points: list[dict[str, Any]] = []

    def add(self, feed: dict[str, Any]) -> None:
        if int(feed.get("seq", 0)) < self.seq:  # the proxy restarted
            self.points.clear()
        self.points.extend(feed.get("history", []))
        del self.points[:-self.keep]
        self.seq = int(feed.get("seq", 0))

    def values(self, route: str, key: str) -> list[float | None]:
        return [p["routes"].get(route, {}).get(key) for p in self.points]


def _size_labels(bounds: list[int]) -> list[str]:
    labels, low = [], 1
    for bound in bounds:
        labels.append(str(bound) if low == bound else f"{low}-{bound}")
        low = bound + 1
    labels.append(f">{bounds[-1]}" if bounds else "all")
    return labels


def routes_table(feed: dict[str, Any], history: History) -> Table:
    table = Table(title="routes", title_justify="left", expand=True, pad_edge=False)
    for name, justify in (("route", "left"), ("kind", "left"), ("items/s", "right"), (f"trend ({TREND}s)", "left"),
                          ("batch/s", "right"), ("mean batch", "right"), ("queued", "right"), ("in flight", "right"),
                          ("queue p50/p99 ms", "right"), ("upstream p50/p99 ms", "right"), ("err/s", "right"),
                          ("flushes", "left")):
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for route in feed.get("routes", []):
        last = route.get("latest") or {}
        batcher = route.get("batcher")
        if batcher is not None:
            errors = (last.get("batch_errors_per_s") or 0) + (last.get("rejected_per_s") or 0)
            flushes = " ".join(f"{FLUSH_SHORT.get(k, k)}:{v}" for k, v in batcher["flushes"].items() if v)
            table.add_row(
                route["name"], "batch", fmt(last.get("items_per_s")),
                Text(sparkline(history.values(route["name"], "items_per_s")), style="cyan"),
                fmt(last.get("batches_per_s")), fmt(last.get("size_mean")),
                f"{batcher['queued']}/{batcher['max_queue']}", f"{batcher['in_flight']}/{batcher['max_in_flight']}",
                f"{fmt(last.get('queue_ms_p50'))} / {fmt(last.get('queue_ms_p99'))}",
                f"{fmt(last.get('upstream_ms_p50'))} / {fmt(last.get('upstream_ms_p99'))}",
                Text(fmt(errors), style="red" if errors else ""), flushes or DASH)
        else:
            errors = last.get("errors_5xx_per_s") or 0
            table.add_row(
                route["name"], route.get("kind", "plain"), fmt(last.get("requests_per_s")),
                Text(sparkline(history.values(route["name"], "requests_per_s")), style="cyan"),
                "", "", "", "", f"p50/p99 {fmt(last.get('request_ms_p50'))} / {fmt(last.get('request_ms_p99'))}", "",
                Text(fmt(errors), style="red" if errors else ""), "")
    return table


def sizes_table(feed: dict[str, Any]) -> Table | None:
    batching = [r for r in feed.get("routes", []) if r.get("sizes")]
    if not batching:
        return None
    bounds = batching[0]["sizes"]["bounds"]
    used = max((max((i for i, n in enumerate(r["sizes"]["counts"]) if n), default=0) for r in batching), default=0)
    labels = _size_labels(bounds)[: used + 1]
    table = Table(title=f"batch sizes, last {fmt(batching[0]['sizes']['window_s'], 0)}s (batches per size)",
                  title_justify="left", expand=True, pad_edge=False)
    table.add_column("route", no_wrap=True)
    for label in labels:
        table.add_column(label, justify="right", no_wrap=True)
    for route in batching:
        counts = route["sizes"]["counts"][: len(labels)]
        peak = max(counts) or 1
        cells = [Text(f"{BLOCKS[max(1, round(n / peak * 8))] if n else ' '} {n}", style="cyan" if n else "dim")
                 for n in counts]
        table.add_row(route["name"], *cells)
    return table


def endpoints_table(feed: dict[str, Any]) -> Table:
    table = Table(title="upstream endpoints", title_justify="left", expand=True, pad_edge=False)
    for name, justify in (("cluster", "left"), ("endpoint", "left"), ("health", "left"), ("active", "right"),
                          ("requests", "right"), ("errors", "right"), ("latency ewma ms", "right"),
                          ("conns open/idle", "right")):
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for cluster in feed.get("clusters", []):
        for endpoint in cluster.get("endpoints", []):
            health = str(endpoint.get("health", "?"))
            conns = endpoint.get("connections") or {}
            table.add_row(cluster.get("name", "?"), str(endpoint.get("address", "?")),
                          Text(health, style=HEALTH_STYLE.get(health, "")), str(endpoint.get("active_requests", DASH)),
                          str(endpoint.get("requests", DASH)), str(endpoint.get("errors", DASH)),
                          fmt(endpoint.get("latency_ewma_ms")), f"{conns.get('open', DASH)}/{conns.get('idle', DASH)}")
    return table


def frame(admin: str, feed: dict[str, Any], history: History) -> Group:
    uptime = max(0.0, float(feed.get("now", 0)) - float(feed.get("started", 0)))
    status = Text("draining", style="bold yellow") if feed.get("draining") else Text("serving", style="bold green")
    header = Text.assemble(("meshbatch top ", "bold"), (normalise(admin), "cyan"), "  ", status,
                           f"  config v{feed.get('version', '?')}  up {uptime:.0f}s  ",
                           (time.strftime("%H:%M:%S", time.localtime(float(feed.get("now", time.time())))), "dim"))
    parts: list[Any] = [header, routes_table(feed, history)]
    sizes = sizes_table(feed)
    if sizes is not None:
        parts.append(sizes)
    parts.append(endpoints_table(feed))
    return Group(*parts)


def run_top(args: argparse.Namespace, console: Console | None = None) -> int:
    console = console or Console()
    history = History()

    def poll() -> Group:
        feed = get_json(args.admin, "/dashboard/feed", since=history.seq)
        history.add(feed)
        return frame(args.admin, feed, history)

    try:
        first = poll()
    except AdminError as exc:
        console.print(f"[red]meshbatch top: cannot read the admin API:[/red] {exc}")
        return 1
    if args.once:
        console.print(first)
        return 0
    done = 1
    with Live(first, console=console, refresh_per_second=4, screen=False, auto_refresh=False) as live:
        while args.iterations is None or done < args.iterations:
            try:
                time.sleep(args.interval)
                live.update(poll(), refresh=True)
            except AdminError as exc:
                live.update(Text(f"cannot read the admin API: {exc} (retrying)", style="red"), refresh=True)
            except KeyboardInterrupt:
                break
            done += 1
    return 0


__all__ = ["History", "frame", "run_top", "sparkline"]
