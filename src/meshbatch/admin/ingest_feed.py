"""An ingest route as the dashboard and `meshbatch top` show it: its figures for the one-second series, and its
entry in `/dashboard/feed`.

Everything is read from the route's own summary (`IngestRoute.summary()`: the log's stats, the flusher's counts,
the sink's facts), the same document `GET /ingest` serves, so the three views never disagree.

The sink's state, in one word:
- `up`: the last delivery reached the sink (or none was needed yet);
- `down`: the last attempt to reach it failed; the flusher is backing off (`error` says why, `failures` how many
  attempts in a row), and the events wait in the log;
- `connecting`: a database sink whose connection is not open yet;
- `starting` / `closed`: the route itself is not serving (starting up, or drained on reload or shutdown).
"""

from __future__ import annotations

from typing import Any, Protocol

from meshbatch.telemetry.series import Reading

COUNTERS = ("accepted", "delivered", "retried", "dead_lettered")


class IngestView(Protocol):
    """What the dashboard reads of an ingest route (meshbatch.ingest.route.IngestRoute provides it)."""

    def summary(self) -> dict[str, Any]: ...


def _part(summary: dict[str, Any], key: str) -> dict[str, Any]:
    part = summary.get(key)
    return part if isinstance(part, dict) else {}


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def sink_state(summary: dict[str, Any]) -> tuple[str, str]:
    """The sink's state (`up`, `down`, `connecting`, `starting`, `closed`) and the last error ("" when none)."""
    delivery = _part(summary, "delivery")
    sink = _part(summary, "sink")
    error = str(delivery.get("last_error") or "")
    route_state = summary.get("state")
    if route_state in ("starting", "closed"):
        return str(route_state), error
    if _number(delivery.get("consecutive_outages")) > 0 or delivery.get("outage"):
        return "down", error
    if sink.get("connected") is False or _part(summary, "log").get("connected") is False:
        return "connecting", error
    return "up", ""


def counts(summary: dict[str, Any]) -> dict[str, float]:
    """The cumulative event counts: accepted, delivered, retried, dead_lettered."""
    delivery = _part(summary, "delivery")
    out = {name: _number(delivery.get(name)) for name in COUNTERS}
    out["accepted"] = _number(summary.get("accepted"))
    return out


def ingest_reading(route: IngestView, reading: Reading) -> None:
    """Add an ingest route's figures to `reading`: event rates from the counts, the log's gauges as read."""
    summary = route.summary()
    reading.counters.update(counts(summary))
    log = _part(summary, "log")
    delivery = _part(summary, "delivery")
    reading.gauges["backlog"] = _number(log.get("backlog"))
    reading.gauges["oldest_age_s"] = _number(log.get("oldest_age_s"))
    reading.gauges["dead_letters"] = _number(log.get("dead_letters"))
    reading.gauges["in_flight"] = _number(delivery.get("in_flight"))


def ingest_entry(route: IngestView) -> dict[str, Any]:
    """The feed's `ingest` block of a route: the log, the delivery counts and the sink, as of now."""
    summary = route.summary()
    log = _part(summary, "log")
    delivery = _part(summary, "delivery")
    sink = _part(summary, "sink")
    state, error = sink_state(summary)
    return {
        "state": summary.get("state"), "ack": summary.get("ack"),
        "log": str(log.get("backend") or "?"),
        "backlog": int(_number(log.get("backlog"))), "bytes": int(_number(log.get("bytes"))),
        "oldest_age_s": _number(log.get("oldest_age_s")),
        "dead_letters": int(_number(log.get("dead_letters"))),
        "in_flight": int(_number(delivery.get("in_flight"))),
        **{f"{name}_total": int(value) for name, value in counts(summary).items()},
        "sink": {"type": str(sink.get("type") or "?"), "state": state, "error": error,
                 "failures": int(_number(delivery.get("consecutive_outages")))},
    }


__all__ = ["IngestView", "counts", "ingest_entry", "ingest_reading", "sink_state"]
