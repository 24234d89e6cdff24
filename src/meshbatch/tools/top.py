"""`meshbatch top --admin URL`: the dashboard's figures in a terminal (rich), refreshed live.

It polls the admin API's `/dashboard/feed` (the same JSON the web dashboard draws), so rates and windowed
percentiles come from the proxy's own one-second history and the first frame already shows them.
`--once` prints one frame and exits (for scripts); `--iterations N` refreshes N times and exits.

At the admin address of `meshbatch run --workers N` (the supervisor's), the feed is the workers' total (each
figure summed, latencies the highest worker's; runtime/workers/merge_feed.py) and a table has a line per worker;
`--worker I` shows worker I's own feed instead (`/workers/I/dashboard/feed`).

Every frame fits the terminal's width (80 columns and up; `COLUMNS` when the output is not a terminal): a table
per kind of route with only its own columns, sparklines shrunk or left out first, then the least important
columns (meshbatch.tools.fit). A wider terminal shows more columns and longer trends.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from meshbatch.tools.admin_client import AdminError, get_json, normalise
from meshbatch.tools.fit import sparkline
from meshbatch.tools.top_tables import (
    batch_table,
    endpoints_table,
    ingest_table,
    plain_table,
    sink_notes,
    sizes_table,
    workers_table,
)

GAP = 2.5  # seconds between two points beyond which samples are missing (the proxy samples once a second)


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
        """A figure's points, oldest first; a second with no sample (the proxy's sampler held up, or restarted)
        is a None, so a sparkline shows a gap there rather than joining what is on either side."""
        out: list[float | None] = []
        before: float | None = None
        for p in self.points:
            t = float(p.get("t", 0.0))
            if before is not None and t - before > GAP:
                out.extend([None] * min(self.keep, round(t - before) - 1))
            before = t
            out.append((p.get("routes") or {}).get(route, {}).get(key))
        return out[-self.keep:]


def frame(admin: str, feed: dict[str, Any], history: History, width: int = 80, worker: int | None = None) -> Group:
    """One screen: a header line, then a table per kind of route (batch, ingest, plain), the batch sizes, the
    workers (at a supervisor's address) and the endpoints, each fitted to `width` columns."""
    workers = feed.get("workers")
    scope = f"worker {worker}  " if worker is not None else \
        f"{len(workers)} workers, total  " if isinstance(workers, list) else ""
    uptime = max(0.0, float(feed.get("now", 0)) - float(feed.get("started", 0)))
    status = Text("draining", style="bold yellow") if feed.get("draining") else Text("serving", style="bold green")
    header = Text.assemble(("meshbatch top ", "bold"), (normalise(admin), "cyan"), "  ", scope, status,
                           f"  config v{feed.get('version', '?')}  up {uptime:.0f}s  ",
                           (time.strftime("%H:%M:%S", time.localtime(float(feed.get("now", time.time())))), "dim"))
    routes = feed.get("routes", [])
    batch = [r for r in routes if r.get("batcher")]
    ingest = [r for r in routes if r.get("ingest") and not r.get("batcher")]
    plain = [r for r in routes if not r.get("batcher") and not r.get("ingest")]
    parts: list[Any] = [header]
    if batch:
        parts.append(batch_table(batch, history.values, width))
        sizes = sizes_table(batch, width)
        if sizes is not None:
            parts.append(sizes)
    if ingest:
        parts.append(ingest_table(ingest, history.values, width))
        parts.extend(sink_notes(ingest))
    if plain:
        parts.append(plain_table(plain, history.values, width))
    if isinstance(workers, list) and workers:
        parts.append(workers_table(workers, width))
    parts.append(endpoints_table(feed.get("clusters", []), width))
    return Group(*parts)


def run_top(args: argparse.Namespace, console: Console | None = None) -> int:
    console = console or Console()
    history = History()
    worker: int | None = getattr(args, "worker", None)
    path = "/dashboard/feed" if worker is None else f"/workers/{worker}/dashboard/feed"

    def poll() -> Group:
        feed = get_json(args.admin, path, since=history.seq)
        history.add(feed)
        return frame(args.admin, feed, history, console.width, worker)

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
