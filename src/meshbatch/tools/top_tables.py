"""The tables of `meshbatch top`, one per kind of route, then the batch sizes and the endpoints, each fitted to the
terminal's width (meshbatch.tools.fit: sparklines shrink and go first, then the least important columns).

Each table has only the columns that mean something for its rows, so every column shown has a value on every row
("-" when there is no figure: no traffic in the last second, say). Names are words, not codes: `flushed by`
reads `wait 93% items 7%`, the share of batches each flush reason sent since the route started.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rich.table import Table
from rich.text import Text

from meshbatch.tools.fit import BLOCKS, Cell, Column, Spark, fit_table, natural_width

DASH = "-"
HEALTH_STYLE = {"healthy": "green", "ejected": "yellow", "degraded": "yellow", "unhealthy": "red"}
SINK_STYLE = {"up": "green", "down": "bold red", "connecting": "yellow", "starting": "yellow", "closed": "dim"}
Values = Callable[[str, str], list[float | None]]  # (route, figure) -> its history, oldest first


def fmt(value: Any, digits: int | None = None) -> str:
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return DASH
    if digits is None:
        digits = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2
    if abs(value) >= 1e6:
        return f"{value / 1e6:.1f}M"
    if abs(value) >= 1e4:
        return f"{value / 1e3:.1f}k"
    return f"{value:.{digits}f}"


def fmt_count(value: Any) -> str:
    """A count: 812, 12.5k, 10k, 3.2M."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return DASH
    for above, scale, unit in ((1e6, 1e6, "M"), (1e4, 1e3, "k")):
        if abs(value) >= above:
            return f"{value / scale:.1f}".rstrip("0").rstrip(".") + unit
    return f"{value:.0f}"


def fmt_age(seconds: Any) -> str:
    """An age in its two largest units: 850ms, 4.2s, 1m15s, 3h30m."""
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
        return DASH
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def ratio(items: float | None, calls: float | None) -> float | None:
    return items / calls if items and calls else None


def saved(items: float | None, calls: float | None) -> str:
    """The share of upstream calls batching saved: 1 - calls/items (`88%`: 100 items took 12 calls)."""
    return f"{max(0.0, 1 - calls / items):.0%}" if items and calls is not None and items >= calls else DASH


def flushed_by(flushes: dict[str, int]) -> str:
    total = sum(flushes.values())
    if not total:
        return DASH
    ranked = sorted(((n, reason) for reason, n in flushes.items() if n), reverse=True)
    return " ".join(f"{reason} {n / total:.0%}" for n, reason in ranked)


def _name(route: dict[str, Any]) -> str:
    return str(route.get("name", "?"))


def _red(text: str, on: bool) -> Text:
    return Text(text, style="red" if on else "")


BATCH_COLUMNS = (
    Column("route", "left", required=True), Column("items/s", keep=100),
    Column("upstream\ncalls/s", keep=97), Column("items\nper call", keep=95), Column("calls\nsaved", keep=45),
    Column("items/s\nlast {n}s", "left", spark=True), Column("queued", keep=80), Column("in\nflight", keep=40),
    Column("queue\np50 ms", keep=20), Column("queue\np99 ms", keep=75), Column("upstream\np50 ms", keep=25),
    Column("upstream\np99 ms", keep=78), Column("errors/s", keep=90), Column("rejected/s", keep=60),
    Column("batch\nmean", keep=30), Column("flushed by", "left", keep=10),
)


def batch_table(routes: Sequence[dict[str, Any]], values: Values, width: int) -> Table:
    rows: list[list[Cell]] = []
    for route in routes:
        last, batcher = route.get("latest") or {}, route.get("batcher") or {}
        items, calls = last.get("items_per_s"), last.get("calls_per_s")
        if not items or not calls:  # idle this second: the figures since the route started
            items, calls = batcher.get("items_total"), route.get("upstream_calls_total")
        errors, rejected = last.get("batch_errors_per_s") or 0, last.get("rejected_per_s") or 0
        rows.append([
            _name(route), fmt(last.get("items_per_s")), fmt(last.get("calls_per_s")), fmt(ratio(items, calls)),
            saved(items, calls), Spark(tuple(values(_name(route), "items_per_s"))),
            f"{fmt_count(batcher.get('queued'))}/{fmt_count(batcher.get('max_queue'))}",
            f"{fmt_count(batcher.get('in_flight'))}/{fmt_count(batcher.get('max_in_flight'))}",
            fmt(last.get("queue_ms_p50")), fmt(last.get("queue_ms_p99")),
            fmt(last.get("upstream_ms_p50")), fmt(last.get("upstream_ms_p99")),
            _red(fmt(errors), errors > 0), _red(fmt(rejected), rejected > 0), fmt(last.get("size_mean")),
            flushed_by(batcher.get("flushes") or {}),
        ])
    return fit_table("batch routes", BATCH_COLUMNS, rows, width)


INGEST_COLUMNS = (
    Column("route", "left", required=True), Column("accepted/s", keep=55), Column("delivered/s", keep=100),
    Column("delivered/s\nlast {n}s", "left", spark=True), Column("backlog", keep=98), Column("oldest\nage", keep=92),
    Column("retried/s", keep=75), Column("dead\nletters", keep=85), Column("in\nflight", keep=20),
    Column("sink", "left", keep=95),
)


def ingest_table(routes: Sequence[dict[str, Any]], values: Values, width: int) -> Table:
    rows: list[list[Cell]] = []
    for route in routes:
        last, ingest = route.get("latest") or {}, route.get("ingest") or {}
        sink = ingest.get("sink") or {}
        state = _word(sink.get("state", "?"))
        retried, dead = last.get("retried_per_s") or 0, ingest.get("dead_letters")
        rows.append([
            _name(route), fmt(last.get("accepted_per_s")), fmt(last.get("delivered_per_s")),
            Spark(tuple(values(_name(route), "delivered_per_s"))), fmt_count(ingest.get("backlog")),
            fmt_age(ingest.get("oldest_age_s")) if ingest.get("backlog") else DASH,
            _red(fmt(retried), retried > 0), _red(fmt_count(dead), bool(dead)),
            fmt_count(ingest.get("in_flight")),
            Text(f"{sink.get('type', '?')} {state}", style=SINK_STYLE.get(state, "")),
        ])
    return fit_table("ingest routes", INGEST_COLUMNS, rows, width)


def sink_notes(routes: Sequence[dict[str, Any]]) -> list[Text]:
    """A line per ingest route whose sink is down: why, and for how many attempts in a row."""
    notes = []
    for route in routes:
        sink = (route.get("ingest") or {}).get("sink") or {}
        if sink.get("state") == "down":
            notes.append(Text.assemble((f"{_name(route)}: ", "bold"), ("sink down", "bold red"),
                                       f" ({sink.get('failures', '?')} failed attempts in a row): ",
                                       str(sink.get("error") or "no error recorded")))
    return notes


PLAIN_COLUMNS = (
    Column("route", "left", required=True), Column("kind", "left", keep=20), Column("requests/s", keep=100),
    Column("requests/s\nlast {n}s", "left", spark=True), Column("5xx/s", keep=90), Column("p50 ms", keep=60),
    Column("p99 ms", keep=80),
)


def plain_table(routes: Sequence[dict[str, Any]], values: Values, width: int) -> Table:
    rows: list[list[Cell]] = []
    for route in routes:
        last = route.get("latest") or {}
        errors = last.get("errors_5xx_per_s") or 0
        rows.append([_name(route), str(route.get("kind") or "plain"), fmt(last.get("requests_per_s")),
                     Spark(tuple(values(_name(route), "requests_per_s"))), _red(fmt(errors), errors > 0),
                     fmt(last.get("request_ms_p50")), fmt(last.get("request_ms_p99"))])
    return fit_table("plain routes", PLAIN_COLUMNS, rows, width)


def _size_buckets(bounds: Sequence[int]) -> list[tuple[int, int | None]]:
    """(lowest, highest) batch size of each bucket; None: no upper bound (the overflow bucket)."""
    out: list[tuple[int, int | None]] = []
    low = 1
    for bound in bounds:
        out.append((low, bound))
        low = bound + 1
    out.append((low, None))
    return out


def _size_label(low: int, high: int | None) -> str:
    return f"{low}+" if high is None else str(low) if low == high else f"{low}-{high}"


def _merge(buckets: list[tuple[int, int | None]], counts: list[list[int]]) -> tuple[list[tuple[int, int | None]],
                                                                                   list[list[int]]]:
    """Neighbouring buckets two by two (a narrower table with every batch still counted)."""
    merged = [(buckets[i][0], buckets[min(i + 1, len(buckets) - 1)][1]) for i in range(0, len(buckets), 2)]
    return merged, [[sum(row[i:i + 2]) for i in range(0, len(row), 2)] for row in counts]


def sizes_table(routes: Sequence[dict[str, Any]], width: int) -> Table | None:
    """Batches per size over the last minute, a row per batching route; buckets nobody used are left out, and
    neighbouring buckets are merged until the table fits."""
    batching = [r for r in routes if r.get("sizes")]
    if not batching:
        return None
    sizes = batching[0]["sizes"]
    buckets = _size_buckets(sizes.get("bounds") or [])
    counts = []
    for r in batching:
        row = [n if isinstance(n, int) else 0 for n in (r["sizes"].get("counts") or [])][: len(buckets)]
        counts.append(row + [0] * (len(buckets) - len(row)))
    used = [i for i in range(len(buckets)) if any(row[i] for row in counts)] or [0]
    first, last = used[0], used[-1]
    buckets, counts = buckets[first:last + 1], [row[first:last + 1] for row in counts]
    title = f"batch sizes, last {fmt(sizes.get('window_s'), 0)}s (batches per size)"
    while True:
        columns = [Column("route", "left", required=True)] + [Column(_size_label(*b), required=True) for b in buckets]
        rows: list[list[Cell]] = []
        for route, row in zip(batching, counts, strict=True):
            peak = max(row) or 1
            rows.append([_name(route), *(Text(f"{BLOCKS[max(1, round(n / peak * 8))] if n else ' '} {n}",
                                               style="cyan" if n else "dim") for n in row)])
        table = fit_table(title, columns, rows, width)
        if len(buckets) <= 2 or natural_width(table) <= width:
            return table
        buckets, counts = _merge(buckets, counts)


WORKER_COLUMNS = (
    Column("worker", required=True), Column("pid", keep=30), Column("state", "left", keep=90),
    Column("restarts", keep=40), Column("requests/s", keep=100), Column("5xx/s", keep=80), Column("p99 ms", keep=70),
)


def workers_table(workers: Sequence[dict[str, Any]], width: int) -> Table:
    """At a supervisor's address (`run --workers N`): a line per worker, its own figures of the last second."""
    rows: list[list[Cell]] = []
    for w in workers:
        state = "no answer" if w.get("error") else "ready" if w.get("ready") else "starting"
        errors, restarts = w.get("errors_5xx_per_s") or 0, w.get("restarts") or 0
        rows.append([str(w.get("worker", "?")), str(w.get("pid", DASH)),
                     Text(state, style="green" if state == "ready" else "yellow"),
                     _red(fmt_count(restarts), bool(restarts)), fmt(w.get("requests_per_s")),
                     _red(fmt(errors), errors > 0), fmt(w.get("request_ms_p99"))])
    return fit_table("workers", WORKER_COLUMNS, rows, width)


def _word(value: Any) -> str:
    """A state; the workers' different states of one thing (the total at a supervisor) joined: `healthy/ejected`."""
    return "/".join(str(v) for v in value) if isinstance(value, list) else str(value)


ENDPOINT_COLUMNS = (
    Column("cluster", "left", required=True), Column("endpoint", "left", required=True),
    Column("health", "left", keep=100), Column("active", keep=40), Column("requests", keep=60),
    Column("errors", keep=80), Column("latency\newma ms", keep=70), Column("conns\nopen/idle", keep=20),
)


def endpoints_table(clusters: Sequence[dict[str, Any]], width: int) -> Table:
    rows: list[list[Cell]] = []
    for cluster in clusters:
        for endpoint in cluster.get("endpoints", []):
            health = _word(endpoint.get("health", "?"))
            conns = endpoint.get("connections") or {}
            errors = endpoint.get("errors")
            rows.append([str(cluster.get("name", "?")), str(endpoint.get("address", "?")),
                         Text(health, style=HEALTH_STYLE.get(health, "")), fmt_count(endpoint.get("active_requests")),
                         fmt_count(endpoint.get("requests")), _red(fmt_count(errors), bool(errors)),
                         fmt(endpoint.get("latency_ewma_ms")),
                         f"{fmt_count(conns.get('open'))}/{fmt_count(conns.get('idle'))}"])
    return fit_table("upstream endpoints", ENDPOINT_COLUMNS, rows, width)


__all__ = ["batch_table", "endpoints_table", "flushed_by", "fmt", "fmt_age", "ingest_table", "plain_table",
           "saved", "sink_notes", "sizes_table", "workers_table"]
