"""Scenario `replicas`: how full batches get behind several batching replicas, keys hashed vs round robin.

One upstream process (testbed/fleet.py: each batch takes `--upstream-ms`, whatever its size, as a model on an
accelerator does) behind three `meshbatch run` batching replicas (one route, batch key `header:x-tenant`,
`--max-in-flight` batches at once each). In front of them one caller-side sidecar whose clusters list the three
replicas, one cluster per balancer: `round_robin`, and `ring_hash` / `maglev` with `hash_key: header:x-tenant`,
so that one key's items meet at one replica. Closed-loop keyed load (bench/replicas_load.py: `--concurrency`
connections, keys drawn uniformly from `--keys`) goes through the sidecar to each cluster in turn, rounds
interleaved. The figures: the mean and median batch size (exact, from each answer's batch headers), items/s,
p50/p99 latency, the busiest replica's share of the items (from the replicas' metrics), and the hashed/round
robin ratios.
"""

from __future__ import annotations

import argparse
import tempfile
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from testbed.config import cluster, config, listener, route
from testbed.fleet import Upstream, free_port
from testbed.proxy import MeshbatchProcess, metric_value, write_config

from .common import BenchError, machine_facts, summarize
from .replicas_load import keyed_load
from .replicas_report import render
from .runner import RunContext, ScenarioResult

NAME = "replicas"
SUMMARY = "batches across three batching replicas: batch key hashed by the callers' sidecar vs round robin"
ORDER = 27
REPLICAS = 3
ROUTE = "keyed"
HASHED = ("ring_hash", "maglev")
FIELDS = ("mean_batch", "p50_batch", "item_weighted_batch", "items_per_s", "p50_ms", "p99_ms", "busiest_share",
          "replicas_per_key", "busiest_keys")

__all__ = ["NAME", "ORDER", "SUMMARY", "add_arguments", "render", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, default=None, help="seconds of load per run (6; --quick 2)")
    parser.add_argument("--keys", default=None, help="batch keys, comma-separated counts, one sweep point each "
                                                     "(50,10; --quick 50)")
    parser.add_argument("--concurrency", type=int, default=64, help="closed-loop connections")
    parser.add_argument("--lbs", default=None, help="balancers (round_robin,ring_hash,maglev,ring_hash:125; --quick "
                                                    "round_robin,ring_hash); ring_hash:125 sets "
                                                    "lb_config.hash_balance_factor 125")
    parser.add_argument("--upstream-ms", type=int, default=10, help="the upstream's time per batch")
    parser.add_argument("--item-us", type=int, default=0, help="the upstream's added time per item of a batch")
    parser.add_argument("--max-in-flight", type=int, default=2, help="batches in flight per replica")
    parser.add_argument("--warmup", type=float, default=None, help="seconds not counted at each run's start "
                                                                   "(0.5; --quick 0.3)")
    parser.add_argument("--hot-share", type=float, default=0.0, help="the share of requests on one hot key (0: "
                                                                     "keys drawn uniformly)")
    parser.add_argument("--one-process", action="store_true",
                        help="the replicas as listeners of the sidecar's process (each its own batcher): starts in "
                             "a third of the time, for the test suite; CPU is then shared")


def _replica_listener(n: int, upstream_cluster: str, max_in_flight: int, listen: str) -> dict[str, Any]:
    batch = {"key": ["header:x-tenant"], "max_items": 64, "max_in_flight": max_in_flight, "upstream_path": "/batch",
             "codec": "json-array"}
    return listener(f"replica-{n}", [route(f"{ROUTE}-{n}", upstream_cluster, {"path_prefix": "/"},
                                           timeout_ms=30_000, batch=batch)], listen=listen)


def balancer(spec: str) -> tuple[str, int | None]:
    """`ring_hash` -> (ring_hash, None); `ring_hash:125` -> (ring_hash, 125): hash_balance_factor 125."""
    lb, _, factor = spec.partition(":")
    if lb not in ("round_robin", "least_request", "random", *HASHED) or (factor and lb not in HASHED):
        raise BenchError(f"{spec!r}: a balancer is round_robin, least_request, random, ring_hash[:FACTOR] or "
                         f"maglev[:FACTOR]")
    if factor and not (factor.isdigit() and 100 <= int(factor) <= 100_000):
        raise BenchError(f"{spec!r}: the hash_balance_factor is a percent from 100 to 100000")
    return lb, int(factor) if factor else None


def path_name(spec: str) -> str:
    return spec.replace(":", "-")


def _sidecar(replicas: list[str], lbs: list[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The sidecar's listener `main` (one route `/<lb>/` per balancer) and its clusters over the same replicas."""
    clusters = []
    for spec in lbs:
        lb, factor = balancer(spec)
        extra: dict[str, Any] = {"lb": lb}
        if lb in HASHED:
            extra["hash_key"] = "header:x-tenant"
        if factor is not None:
            extra["lb_config"] = {"hash_balance_factor": factor}
        clusters.append(cluster(path_name(spec), *replicas, **extra))
    routes = [route(path_name(spec), path_name(spec), {"path_prefix": f"/{path_name(spec)}/"}, timeout_ms=30_000)
              for spec in lbs]
    return listener("main", routes), clusters


def configs(upstream: str, replicas: list[str], lbs: list[str], max_in_flight: int,
            one_process: bool) -> dict[str, dict[str, Any]]:
    """Each process's config by name: a process per replica and the sidecar's, or all in `sidecar`."""
    main, clusters = _sidecar(replicas, lbs)
    listeners = [_replica_listener(n, "upstream", max_in_flight, a) for n, a in enumerate(replicas)]
    if one_process:
        return {"sidecar": config([main, *listeners], [cluster("upstream", upstream), *clusters])}
    out = {f"replica-{n}": config([item], [cluster("upstream", upstream)]) for n, item in enumerate(listeners)}
    out["sidecar"] = config([main], clusters)
    return out


def _batch_counts(process: MeshbatchProcess, route_name: str) -> tuple[float, float]:
    """(items, batches) a replica has sent upstream so far."""
    with urllib.request.urlopen(process.admin_url + "/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return (metric_value(text, "meshbatch_batch_size_items_sum", route=route_name),
            metric_value(text, "meshbatch_batch_size_items_count", route=route_name))


def _start_all(tmp: Path, named: dict[str, dict[str, Any]]) -> dict[str, MeshbatchProcess]:
    """Every process at once; if one fails to start, the others are stopped."""
    with ThreadPoolExecutor(len(named)) as pool:
        futures = {name: pool.submit(MeshbatchProcess, write_config(tmp / f"{name}.yaml", cfg))
                   for name, cfg in named.items()}
    started = {name: f.result() for name, f in futures.items() if f.exception() is None}
    failed = [f.exception() for f in futures.values() if f.exception() is not None]
    if failed:
        for process in started.values():
            process.terminate()
        raise BenchError(f"a meshbatch process did not start: {failed[0]!r}")
    return started


Replica = tuple[MeshbatchProcess, str]  # the process and the replica's route


def _measure(ctx: RunContext, sidecar: MeshbatchProcess, replicas: list[Replica], lb: str, keys: int,
             seconds: float, warmup: float, seed: int) -> dict[str, Any]:
    before = [_batch_counts(*r) for r in replicas]
    result = keyed_load(sidecar.address("main"), f"/{path_name(lb)}/item", keys, ctx.args.concurrency, seconds,
                        warmup, seed, ctx.args.hot_share)
    after = [_batch_counts(*r) for r in replicas]
    items = [a[0] - b[0] for a, b in zip(after, before, strict=True)]
    batches = [a[1] - b[1] for a, b in zip(after, before, strict=True)]
    result.update(lb=lb, keys=keys, replica_items=items, replica_batches=batches,
                  replicas_mean_batch=(sum(items) / sum(batches)) if sum(batches) else None,
                  busiest_share=(max(items) / sum(items)) if sum(items) else None)
    return result


def _summary(runs: list[dict[str, Any]], keys_list: list[int], lbs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for keys in keys_list:
        per_lb: dict[str, Any] = {}
        for lb in lbs:
            mine = [r for r in runs if r["keys"] == keys and r["lb"] == lb]
            per_lb[lb] = {f: summarize([r[f] for r in mine if r.get(f) is not None]) for f in FIELDS}
        ratios: dict[str, Any] = {}
        rr = [r for r in runs if r["keys"] == keys and r["lb"] == "round_robin"]
        for lb in lbs:
            if lb == "round_robin" or not rr:
                continue
            pairs = [(h, b) for h in runs for b in rr if h["keys"] == keys and h["lb"] == lb
                     and h["round"] == b["round"]]
            ratios[lb] = {f: summarize([h[f] / b[f] for h, b in pairs if h.get(f) and b.get(f)])
                          for f in ("mean_batch", "items_per_s", "p99_ms")}
        out[str(keys)] = {"by_lb": per_lb, "vs_round_robin": ratios}
    return out


def run(ctx: RunContext) -> ScenarioResult:
    args = ctx.args
    seconds = args.duration or (2.0 if ctx.quick else 6.0)
    warmup = args.warmup if args.warmup is not None else (0.3 if ctx.quick else 0.5)
    keys_list = [int(k) for k in str(args.keys or ("50" if ctx.quick else "50,10")).split(",") if k.strip()]
    lbs = [lb.strip() for lb in str(args.lbs or ("round_robin,ring_hash" if ctx.quick else
                                                 "round_robin,ring_hash,maglev,ring_hash:125")).split(",")
           if lb.strip()]
    for spec in lbs:
        balancer(spec)  # a wrong name fails here, before any process starts
    runs: list[dict[str, Any]] = []
    failures: list[str] = []
    ctx.begin(ctx.repeat * len(keys_list) * len(lbs), "starting")
    upstream = Upstream("upstream", free_port()).start()
    processes: dict[str, MeshbatchProcess] = {}
    addresses: list[str] = []
    try:
        upstream.control(delay_ms=max(0, args.upstream_ms), item_us=max(0, args.item_us))
        with tempfile.TemporaryDirectory(prefix="meshbatch-replicas-") as tmp:
            # the replicas' ports are chosen here, so that the sidecar starts beside them rather than after
            addresses = [f"127.0.0.1:{free_port()}" for _ in range(REPLICAS)]
            processes = _start_all(Path(tmp), configs(upstream.address, addresses, lbs,
                                                      max(1, args.max_in_flight), args.one_process))
            sidecar = processes["sidecar"]
            replicas = [(processes.get(f"replica-{n}", sidecar), f"{ROUTE}-{n}") for n in range(REPLICAS)]
            for round_no in range(ctx.repeat):
                for keys in keys_list:
                    order = lbs if round_no % 2 == 0 else lbs[::-1]
                    for lb in order:
                        ctx.step(f"round {round_no + 1}: {keys} keys, {lb}")
                        measured = _measure(ctx, sidecar, replicas, lb, keys, seconds, warmup, seed=round_no + 1)
                        measured["round"] = round_no + 1
                        if measured["errors"] or not measured["batches"]:
                            failures.append(f"{lb}, {keys} keys, round {round_no + 1}: {measured['errors']} errors "
                                            f"{measured['error_kinds']}, {measured['batches']} batches seen")
                        runs.append(measured)
                        ctx.done()
    finally:
        for process in processes.values():
            process.terminate()
        upstream.kill()
    settings = {"replicas": REPLICAS, "keys": keys_list, "lbs": lbs, "concurrency": args.concurrency,
                "seconds": seconds, "warmup": warmup, "upstream_ms": args.upstream_ms,
                "item_us": args.item_us,
                "max_in_flight": args.max_in_flight, "max_items": 64, "one_process": args.one_process,
                "hot_share": args.hot_share,
                "addresses": addresses}  # the replicas' (what the hash rings are built from)
    data = {"scenario": NAME, "mode": "quick" if ctx.quick else "full", "settings": settings, "runs": runs,
            "summary": _summary(runs, keys_list, lbs), "machine": machine_facts({})}
    return ScenarioResult(data, render(data), failures)
