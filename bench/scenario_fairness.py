"""Scenario `fairness`: a quiet tenant's latency while another floods, with and without `batch.fairness`.

One batch upstream (testbed/batch_upstream.py, 10 ms a batch) behind `meshbatch run` with two routes that differ
only in `fairness`: one slot, 4 items a batch, the batch key `header:x-tenant`. Closed-loop callers (keep-alive,
one thread each): `hot` runs ten times as many callers as each of the quiet tenants, so the slot is the
bottleneck and hot's backlog is deep. Each round measures both routes, one after the other in rotating order;
the figure is each tenant group's p50 and p99 latency and request rate, median over the rounds.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from testbed.batch_upstream import BatchUpstream, batch_route
from testbed.config import cluster, config, listener
from testbed.proxy import MeshbatchProcess, write_config

from .common import machine_facts, summarize
from .report import num, spread, table
from .runner import RunContext, ScenarioResult

NAME = "fairness"
SUMMARY = "fair tenants: a quiet tenant's p50/p99 while one floods at 10x, with and without batch.fairness"
ORDER = 25
ROUTES = ("fair", "unfair")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, default=None, help="seconds of load per run (8; --quick 3)")
    parser.add_argument("--quiet-tenants", type=int, default=3, help="quiet tenants (each with --quiet-callers)")
    parser.add_argument("--quiet-callers", type=int, default=2, help="callers per quiet tenant")
    parser.add_argument("--factor", type=int, default=10, help="the hot tenant's callers, as a multiple of one "
                                                               "quiet tenant's")


def _config(upstream: BatchUpstream) -> dict[str, Any]:
    spec = {"key": ["header:x-tenant"], "max_items": 4, "max_in_flight": 1}
    routes = [batch_route("fair", "/fair/", "/b/json-array/ok?ms=10", timeout_ms=30_000,
                          fairness={"default_weight": 1}, **spec),
              batch_route("unfair", "/unfair/", "/b/json-array/ok?ms=10", timeout_ms=30_000, **spec)]
    return config([listener("main", routes)], [cluster("batch", upstream.address)])


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def measure(base_url: str, route: str, seconds: float, tenants: dict[str, int]) -> dict[str, Any]:
    """Closed-loop callers per tenant for `seconds`: latencies (ms) by tenant group (`hot`, `quiet`)."""
    latencies: dict[str, list[float]] = {"hot": [], "quiet": []}
    errors: list[str] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds
    workers = sum(tenants.values())
    client = httpx.Client(base_url=base_url, timeout=30,
                          limits=httpx.Limits(max_connections=workers, max_keepalive_connections=workers))

    def loop(tenant: str) -> None:
        group = "hot" if tenant == "hot" else "quiet"
        mine: list[float] = []
        while time.monotonic() < stop:
            started = time.perf_counter()
            try:
                response = client.post(f"/{route}/x", content=b'{"id": 1}',
                                       headers={"x-tenant": tenant, "content-type": "application/json"})
            except httpx.HTTPError as exc:
                with lock:
                    errors.append(repr(exc))
                continue
            if response.status_code != 200:
                with lock:
                    errors.append(f"{response.status_code} {response.text[:80]}")
                continue
            mine.append((time.perf_counter() - started) * 1000)
        with lock:
            latencies[group].extend(mine)

    threads = [threading.Thread(target=loop, args=(tenant,)) for tenant, n in tenants.items() for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    client.close()
    result: dict[str, Any] = {"route": route, "seconds": seconds, "errors": len(errors),
                              "error_sample": errors[:3]}
    for group, values in latencies.items():
        result[group] = {"requests_per_s": len(values) / seconds, "p50_ms": _percentile(values, 0.50),
                         "p99_ms": _percentile(values, 0.99), "n": len(values)}
    return result


def run(ctx: RunContext) -> ScenarioResult:
    seconds = ctx.args.duration or (3.0 if ctx.quick else 8.0)
    quiet_callers = max(1, ctx.args.quiet_callers)
    tenants = {"hot": quiet_callers * max(1, ctx.args.factor)}
    tenants.update({f"quiet-{n + 1}": quiet_callers for n in range(max(1, ctx.args.quiet_tenants))})
    runs: list[dict[str, Any]] = []
    failures: list[str] = []
    ctx.begin(ctx.repeat * len(ROUTES), "starting")
    upstream = BatchUpstream().start()
    try:
        with tempfile.TemporaryDirectory(prefix="meshbatch-fairness-") as tmp:
            process = MeshbatchProcess(write_config(Path(tmp) / "meshbatch.yaml", _config(upstream)))
            try:
                for round_no in range(ctx.repeat):
                    order = ROUTES if round_no % 2 == 0 else ROUTES[::-1]
                    for route in order:
                        ctx.step(f"round {round_no + 1}: {route}")
                        measured = measure(process.url("main"), route, seconds, tenants)
                        measured["round"] = round_no + 1
                        if measured["errors"]:
                            failures.append(f"{route} round {round_no + 1}: {measured['errors']} errors, "
                                            f"e.g. {measured['error_sample']}")
                        runs.append(measured)
                        upstream.reset()
                        ctx.done()
            finally:
                process.terminate()
    finally:
        upstream.stop()
    summary = {route: {group: {field: summarize([r[group][field] for r in runs if r["route"] == route
                                                 and r[group][field] is not None])
                               for field in ("p50_ms", "p99_ms", "requests_per_s")}
                       for group in ("hot", "quiet")} for route in ROUTES}
    data = {"scenario": NAME, "seconds": seconds, "tenants": tenants, "runs": runs, "summary": summary,
            "machine": machine_facts({})}
    return ScenarioResult(data, render(data), failures)


def render(data: dict[str, Any]) -> str:
    tenants = data["tenants"]
    quiet = [name for name in tenants if name != "hot"]
    rows = []
    for route in ROUTES:
        for group in ("quiet", "hot"):
            cell = data["summary"][route][group]
            rows.append([route, group, spread(cell["p50_ms"], 1), spread(cell["p99_ms"], 1),
                         spread(cell["requests_per_s"], 0)])
    fair = data["summary"]["fair"]["quiet"]["p99_ms"]["median"]
    unfair = data["summary"]["unfair"]["quiet"]["p99_ms"]["median"]
    gain = f"{unfair / fair:.1f}x lower" if fair and unfair else "n/a"
    rounds = len({r["round"] for r in data["runs"]})
    return "\n".join([
        "# Fair tenants",
        "",
        f"One slot of 4 items, a 10 ms upstream; `hot` runs {tenants['hot']} closed-loop callers, each of "
        f"{len(quiet)} quiet tenants {tenants[quiet[0]] if quiet else 0}. Latency in ms, median (min-max) over "
        f"{rounds} round(s) of {num(data['seconds'], 0)} s per route.",
        "",
        table(["route", "tenants", "p50 ms", "p99 ms", "requests/s"], rows),
        "",
        f"The quiet tenants' p99 with `fairness`: {gain} than without "
        f"({num(fair, 1)} ms against {num(unfair, 1)} ms).",
        "",
    ])
