"""Exact accounting of a scenario's requests, from three sides, and the bars every scenario shares.

- The callers (the load generator): per id, an answer (with its status and reason) or a transport failure.
- The upstreams: every id they received, from their id files (a SIGKILLed upstream's too).
- The proxy: its own counters (`meshbatch_requests_total` by route) and, where enabled, its access log (one line
  per answer, with the caller's `x-request-id`).

A request is *admitted* when the proxy read it. A caller that gets no answer cannot tell whether it was; the
upstreams and the access log can. So a request whose connection closed before any answer and which no upstream
received and no access-log line names was *not admitted* (the connection closed before the request was read:
the HTTP/1.1 keep-alive race, safe to retry). An admitted request without an answer is *lost*.
*Duplicate deliveries* are upstream receipts beyond the first of an id: allowed only up to the retries the
proxy made (a retried request may have reached an upstream that then failed to answer). An answer *given twice*
is an answer carrying another caller's id, bytes arriving on an idle connection, or two access-log lines for one id.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from .common import ScenarioResult, percentile
from .loadgen import (
    ABORTED,
    CLOSED_BEFORE,
    CLOSED_MID,
    MISMATCH,
    NOT_SENT,
    PENDING,
    RESPONSE,
    TIMEOUT,
    LoadGen,
    Stream,
)


@dataclass
class Bars:
    """What a scenario allows; the defaults are the strict ones."""

    min_success: float = 1.0  # 2xx share of admitted requests (aborted ones excepted)
    max_not_admitted: int = 0  # refused connections + requests closed before being read
    max_latency_s: float | None = None  # the slowest answer, from its scheduled send time


@dataclass
class Sides:
    """What the upstreams and the proxy saw; None where a side is not available (e.g. a SIGKILLed proxy's
    counters)."""

    upstream_ids: Counter[str] | None = None
    proxy_answered: dict[str, int] | None = None  # by route
    log_ids: Counter[str] | None = None
    retries: dict[str, int] | None = None  # by route, in requests (plain) or items (batching)


def stream_figures(stream: Stream, sides: Sides) -> dict[str, Any]:
    ups = sides.upstream_ids
    logged = sides.log_ids
    out = stream.outcome
    sent = sum(1 for o in out if o != PENDING)
    answered = sum(1 for o in out if o in (RESPONSE, MISMATCH))
    ok = stream.ok
    aborted = sum(1 for o in out if o == ABORTED)
    never_sent = sum(1 for o in out if o in NOT_SENT)
    not_admitted = never_sent
    lost = 0
    for seq, o in enumerate(out):
        if o in (CLOSED_MID, TIMEOUT):
            lost += 1
        elif o == CLOSED_BEFORE:
            ident = stream.id(seq)
            seen = (ups is not None and ident in ups) or (logged is not None and ident in logged)
            if seen:
                lost += 1
            else:
                not_admitted += 1
    duplicates = 0
    if ups is not None:
        duplicates = sum(max(0, ups.get(stream.id(seq), 0) - 1) for seq in range(len(out)))
    twice = sum(1 for o in out if o == MISMATCH) + stream.unsolicited
    if logged is not None:
        twice += sum(1 for seq in range(len(out)) if logged.get(stream.id(seq), 0) > 1)
    lat = stream.latencies()
    admitted = sent - not_admitted - aborted
    return {
        "route": stream.spec.route, "sent": sent, "answered": answered, "ok": ok, "failed": stream.failures(),
        "lost": lost, "duplicate_deliveries": duplicates, "answered_twice": twice, "not_admitted": not_admitted,
        "aborted": aborted, "admitted": admitted, "success": round(ok / admitted, 6) if admitted else 1.0,
        "p50_ms": round(1000 * percentile(lat, 0.5), 2), "p99_ms": round(1000 * percentile(lat, 0.99), 2),
        "max_ms": round(1000 * max(lat, default=0.0), 2),
    }


def account(result: ScenarioResult, load: LoadGen, sides: Sides, bars: Bars | None = None,
            streams: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Figures per stream into `result.figures["streams"]`, and the shared bars as checks."""
    bars = bars or Bars()
    chosen = [load.streams[name] for name in (streams or list(load.streams))]
    figures = {s.spec.name: stream_figures(s, sides) for s in chosen}
    result.figures.setdefault("streams", {}).update(figures)
    result.figures["load_generator_lag_max_ms"] = round(1000 * load.lag_max, 1)
    pending = sum(1 for s in chosen for o in s.outcome if o == PENDING)
    result.check("one fate per request", pending == 0, f"{pending} request(s) without an outcome")
    for name, f in figures.items():
        result.check(f"{name}: nothing lost", f["lost"] == 0,
                     f"{f['lost']} admitted request(s) without an answer (of {f['sent']})")
        result.check(f"{name}: no answer twice", f["answered_twice"] == 0,
                     f"{f['answered_twice']} answer(s) given twice or to the wrong caller")
        result.check(f"{name}: success >= {bars.min_success:.1%}", f["success"] >= bars.min_success,
                     f"{f['ok']}/{f['admitted']} = {f['success']:.4%} 2xx; failures {f['failed']}")
        result.check(f"{name}: not admitted <= {bars.max_not_admitted}", f["not_admitted"] <= bars.max_not_admitted,
                     f"{f['not_admitted']} refused or closed before being read")
        if bars.max_latency_s is not None:
            result.check(f"{name}: slowest answer <= {bars.max_latency_s:g} s",
                         f["max_ms"] <= 1000 * bars.max_latency_s, f"max {f['max_ms']} ms, p99 {f['p99_ms']} ms")
    _proxy_side(result, chosen, figures, sides)
    return figures


def _proxy_side(result: ScenarioResult, chosen: list[Stream], figures: dict[str, dict[str, Any]],
                sides: Sides) -> None:
    by_route: dict[str, list[str]] = {}
    for s in chosen:
        by_route.setdefault(s.spec.route, []).append(s.spec.name)
    for route_name, names in by_route.items():
        client = sum(figures[n]["answered"] for n in names)
        slack = sum(figures[n]["aborted"] + figures[n]["lost"] for n in names)
        if sides.proxy_answered is not None and route_name in sides.proxy_answered:
            proxy = sides.proxy_answered[route_name]
            result.figures.setdefault("proxy_answered", {})[route_name] = proxy
            result.check(f"{route_name}: proxy counters agree", client <= proxy <= client + slack,
                         f"proxy answered {proxy}, callers got {client} (+{slack} aborted or lost)")
        if sides.upstream_ids is not None:
            dups = sum(figures[n]["duplicate_deliveries"] for n in names)
            retries = (sides.retries or {}).get(route_name, 0)
            result.figures.setdefault("retries", {})[route_name] = retries
            result.check(f"{route_name}: duplicate deliveries only from retries", dups <= retries,
                         f"{dups} duplicate upstream deliveries, {retries} retries")
    if sides.upstream_ids is not None:
        known = {s.id(seq) for s in chosen for seq in range(s.total)}
        prefixes = tuple(s.spec.tag for s in chosen)
        phantom = [i for i in sides.upstream_ids if i.startswith(prefixes) and i not in known]
        result.check("upstreams got no unknown id", not phantom, f"{len(phantom)} id(s) nobody sent: {phantom[:5]}")


def retries_of(text: str, routes: list[str]) -> dict[str, int]:
    """Retries made per route, from the proxy's metrics text."""
    from .mesh import metric_value

    return {r: int(metric_value(text, "meshbatch_route_attempts_total", route=r, kind="retry")) for r in routes}


__all__ = ["Bars", "Sides", "account", "retries_of", "stream_figures"]
