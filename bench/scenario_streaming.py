"""Scenario `streaming`: the callers' latency when a batch's items take different times, with and without
`batch.stream_results`.

`meshbatch run` with three batching routes to the same streaming ndjson upstream (testbed/stream_upstream.py: the
items of a batch are worked on at once, item i takes the `ms` of its body, its line is written once it and the
items before it are done). Each round sends `--items` callers at once, their item times drawn from a fixed seed
between 0 and `--max-ms`; they make one batch (`max_items` is the round's size). On the `whole` route every caller
waits for the batch's answer to end; on the `live` route each caller is answered when its line arrives (lines in
item order); on `live_by_index` the upstream writes each line as its item completes, naming the item's position
(`stream_index_field`). The figure is the p50 (and p99) of the callers' latency over every round, and the ratio
whole / live.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from testbed.config import cluster, config, listener
from testbed.proxy import MeshbatchProcess, write_config
from testbed.stream_upstream import StreamUpstream

from .common import BenchError, machine_facts, ratio
from .report import num, table
from .runner import RunContext, ScenarioResult

NAME = "streaming"
SUMMARY = "streamed batch answers: callers' p50/p99 when items take different times, with and without streaming"
ORDER = 25
ROUTES = ("whole", "live", "live_by_index")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--items", type=int, default=16, help="callers per batch (16)")
    parser.add_argument("--rounds", type=int, default=None, help="batches per route (40; --quick 8)")
    parser.add_argument("--max-ms", type=float, default=200.0, help="the slowest item's time in ms (200)")


def _route(name: str, items: int, stream: bool, by_index: bool = False) -> dict[str, Any]:
    batch: dict[str, Any] = {"codec": "ndjson", "upstream_path": "/stream/any" if by_index else "/stream/ok",
                             "max_items": items, "max_wait_ms": 500, "min_wait_ms": 500, "max_in_flight": 1,
                             "stream_results": stream}
    if by_index:
        batch["stream_index_field"] = "i"
    return {"name": name, "match": {"path_prefix": f"/{name}/"}, "cluster": "stream", "timeout_ms": 10_000,
            "batch": batch}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _round(client: httpx.AsyncClient, route: str, times: list[float]) -> list[tuple[float, float]]:
    """One batch: every caller at once; each caller's latency in ms, and the part of it after its batch was sent
    (the latency less `x-meshbatch-queue-ms`)."""
    async def one(ms: float) -> tuple[float, float]:
        started = time.perf_counter()
        response = await client.post(f"/{route}/x", json={"ms": ms})
        took = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise BenchError(f"{route}: {response.status_code} {response.text[:200]}")
        return took, took - float(response.headers["x-meshbatch-queue-ms"])

    return list(await asyncio.gather(*(one(ms) for ms in times)))


async def _measure(base: str, rounds: int, items: int, max_ms: float) -> dict[str, list[tuple[float, float]]]:
    draw = random.Random(21)
    plans = [[round(draw.uniform(0, max_ms), 1) for _ in range(items)] for _ in range(rounds)]
    latencies: dict[str, list[tuple[float, float]]] = {name: [] for name in ROUTES}
    limits = httpx.Limits(max_connections=items, max_keepalive_connections=items)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:
        await _round(client, "whole", [0.0] * items)  # warm the connections up
        for times in plans:
            for name in ROUTES:  # the same items on both routes, alternately
                latencies[name].extend(await _round(client, name, times))
    return latencies


def run(ctx: RunContext) -> ScenarioResult:
    items, max_ms = int(ctx.args.items), float(ctx.args.max_ms)
    rounds = ctx.args.rounds or (8 if ctx.quick else 40)
    if items < 2:
        raise BenchError("--items must be at least 2")
    ctx.begin(1, f"{rounds} batches of {items} items per route")
    upstream = StreamUpstream().start()
    try:
        with tempfile.TemporaryDirectory(prefix="meshbatch-streaming-") as tmp:
            routes = [_route("whole", items, False), _route("live", items, True),
                      _route("live_by_index", items, True, by_index=True)]
            path = write_config(Path(tmp) / "streaming.yaml",
                                config([listener("main", routes)], [cluster("stream", upstream.address)]))
            proxy = MeshbatchProcess(path)
            try:
                latencies = asyncio.run(_measure(proxy.url("main"), rounds, items, max_ms))
            finally:
                proxy.terminate()
    finally:
        upstream.stop()
    ctx.done()
    summary: dict[str, Any] = {}
    for name, pairs in latencies.items():
        total, sent = [p[0] for p in pairs], [p[1] for p in pairs]
        summary[name] = {"p50_ms": percentile(total, 0.5), "p99_ms": percentile(total, 0.99),
                         "mean_ms": statistics.fmean(total), "after_send_p50_ms": percentile(sent, 0.5),
                         "after_send_p99_ms": percentile(sent, 0.99), "callers": len(pairs)}
    summary["p50_gain"] = {"ratio": ratio(summary["whole"]["p50_ms"], summary["live"]["p50_ms"]),
                           "after_send_ratio": ratio(summary["whole"]["after_send_p50_ms"],
                                                     summary["live"]["after_send_p50_ms"]),
                           "by_index_ratio": ratio(summary["whole"]["p50_ms"], summary["live_by_index"]["p50_ms"]),
                           "by_index_after_send_ratio": ratio(summary["whole"]["after_send_p50_ms"],
                                                              summary["live_by_index"]["after_send_p50_ms"])}
    data = {"settings": {"items": items, "rounds": rounds, "max_ms": max_ms, "hold_ms": 500},
            "summary": summary, "machine": machine_facts({"meshbatch": "this checkout"})}
    return ScenarioResult(data=data, markdown=render(data))


def render(data: dict[str, Any]) -> str:
    settings, summary = data["settings"], data["summary"]
    rows = [[name, num(summary[name]["p50_ms"], 1), num(summary[name]["p99_ms"], 1),
             num(summary[name]["after_send_p50_ms"], 1), num(summary[name]["after_send_p99_ms"], 1),
             str(summary[name]["callers"])] for name in ROUTES]
    return "\n".join([
        f"## Streamed batch answers: {settings['rounds']} batches of {settings['items']} items, item times "
        f"0-{settings['max_ms']:.0f} ms",
        "",
        table(["route", "p50 ms", "p99 ms", "after send p50 ms", "after send p99 ms", "callers"], rows),
        "",
        f"p50 whole / live: {num(summary['p50_gain']['ratio'])}x end to end, "
        f"{num(summary['p50_gain']['after_send_ratio'])}x after the batch was sent (the latency less "
        "x-meshbatch-queue-ms). Lines matched in order: a caller's line waits for the items before it (item i "
        "is answered after the slowest of items 0..i).",
        "",
        f"p50 whole / live_by_index: {num(summary['p50_gain'].get('by_index_ratio'))}x end to end, "
        f"{num(summary['p50_gain'].get('by_index_after_send_ratio'))}x after the batch was sent. Lines name "
        "their item (`stream_index_field: i`) and are written as each item completes.",
    ])
