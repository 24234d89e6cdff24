"""Scenario `grpc`: gRPC unary calls batched by meshbatch, and gRPC proxying beside nginx's `grpc_pass`.

h2load (h2c with prior knowledge) sends gRPC unary calls, one 2-byte message each (`content-type:
application/grpc`, `te: trailers`), closed loop, from 1 to 256 concurrent streams (32 streams a connection at
most). Two parts, the targets of each interleaved per round, the order rotating:

- **batching**: `/bench.Work/Get` on a grpcio server whose one worker pays a fixed cost per call plus a cost per
  item (2 ms + 20 us, the `batching` scenario's `fixed` model; bench/grpc_upstream.py). `direct`: h2load to the
  server, one call per item; `meshbatch`: through a `codec: grpc` batch route into the server's batch method
  (the envelope, served by the consumer SDK); `nginx`: through `grpc_pass`, one call per item. Items/s is the
  callers' answered calls per second; the server's counters give the calls it served (mean batch).
- **proxying**: `/bench.Proxy/Echo` answered by a static nginx (one gRPC message and `grpc-status: 0`), through
  nginx `grpc_pass` and through a plain meshbatch route (`protocol: http2` cluster): req/s, latency and proxy CPU
  per call, meshbatch / nginx.

Each proxy runs one worker pinned to the proxy core; upstreams and h2load share the other core. h2load cannot
read trailers: a call answered 200 with a non-zero grpc-status counts as answered, so the server's item count is
checked against the answers (fewer items served than answers is an error).
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import Any

from . import grpc_report, peers, peers_grpc, scenario_proxy
from .common import BenchError, CorePlan, machine_facts, peer_workdir, plan_cores, require_tools, tool_version
from .h2load import run_h2load
from .peers import Peer
from .runner import RunContext, ScenarioResult

NAME = "grpc"
SUMMARY = "gRPC: unary calls batched (direct vs meshbatch vs nginx grpc_pass, 1-256 streams), and gRPC proxying"
ORDER = 13
PER_CONNECTION = 32  # concurrent streams per h2load connection at most


def _ints(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text}") from exc
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"streams must be >= 1: {text}")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--streams", type=_ints, default=None, help="concurrent streams per run (1,16,64,256; "
                                                                     "--quick 16,256)")
    parser.add_argument("--duration", type=scenario_proxy._positive, default=None,
                        help="seconds per h2load run (5; --quick 1)")
    parser.add_argument("--parts", default="batching,proxying", help="batching, proxying or both")
    parser.add_argument("--base-ms", type=float, default=2.0, help="the server's cost per call")
    parser.add_argument("--per-item-us", type=float, default=20.0, help="the server's cost per item")
    parser.add_argument("--max-items", type=int, default=64, help="meshbatch's max batch size")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="meshbatch's max batch wait")
    parser.add_argument("--max-in-flight", type=int, default=2, help="meshbatch's batches in flight")


def _settings(ctx: RunContext) -> dict[str, Any]:
    args = ctx.args
    parts = [p.strip() for p in str(args.parts).split(",") if p.strip()]
    if not parts or set(parts) - {"batching", "proxying"}:
        raise BenchError(f"--parts: batching, proxying or both, not {args.parts}")
    return {
        "parts": parts,
        "repeat": ctx.repeat,
        "streams": args.streams or ([16, 256] if ctx.quick else [1, 16, 64, 256]),
        "per_connection": PER_CONNECTION,
        "seconds": args.duration if args.duration is not None else (1.0 if ctx.quick else 5.0),
        "warmup_seconds": 0.0 if ctx.quick else 1.0,
        "work": {"model": "fixed", "base_ms": args.base_ms, "per_item_us": args.per_item_us},
        "batch": {"max_items": args.max_items, "max_wait_ms": args.max_wait_ms, "max_in_flight": args.max_in_flight,
                  "timeout_ms": 10_000},
        "protocol": "h2c, prior knowledge; gRPC unary, a 2-byte message",
    }


def _connections(streams: int) -> tuple[int, int]:
    connections = max(1, -(-streams // PER_CONNECTION))
    return connections, max(1, streams // connections)


def _one(ctx: RunContext, settings: dict[str, Any], part: str, target: Peer, upstream: Peer, streams: int,
         h2load: str, workdir: Path, cores: CorePlan) -> dict[str, Any]:
    path = peers_grpc.GET if part == "batching" else peers_grpc.ECHO
    connections, per_connection = _connections(streams)
    data = peers_grpc.message_file(workdir)

    def once() -> dict[str, Any]:
        return run_h2load(h2load, target.port, settings["seconds"], connections, per_connection, cores,
                          workdir / "h2load.log", warmup=settings["warmup_seconds"], path=path, data=data,
                          headers=peers_grpc.HEADERS)

    before = peers_grpc.work_stats(upstream.port) if part == "batching" else None
    record = scenario_proxy._measured(target, upstream, cores, once)
    answered = record["requests"] - record["errors"]
    if before is not None:
        after = peers_grpc.work_stats(upstream.port)
        calls, items = after["calls"] - before["calls"], after["items"] - before["items"]
        record.update(upstream_calls=calls, upstream_items=items, mean_batch=items / calls if calls else None)
        if items < answered:
            record["error"] = f"{answered} calls answered but {items} items served: answers without the work"
    verdict = scenario_proxy._verdict(answered, record["errors"], "h2load")
    if verdict:
        record["error"] = verdict
    if record.get("proxy_cpu_s") is not None and record["requests"]:
        counted = settings["seconds"] / (settings["seconds"] + settings["warmup_seconds"])
        record["proxy_cpu_us_per_request"] = record["proxy_cpu_s"] * counted / record["requests"] * 1e6
    return record


def _runs(ctx: RunContext, settings: dict[str, Any], plan: dict[str, tuple[list[Peer], Peer]], h2load: str,
          workdir: Path) -> list[dict[str, Any]]:
    cores = plan_cores()
    runs: list[dict[str, Any]] = []
    for round_no in range(settings["repeat"]):
        for streams in settings["streams"]:
            for part, (targets, upstream) in plan.items():
                for target in scenario_proxy._rotated(targets, round_no):
                    ctx.step(f"{part} {target.name}, {streams} streams, round {round_no + 1}/{settings['repeat']}")
                    try:
                        record = _one(ctx, settings, part, target, upstream, streams, h2load, workdir, cores)
                    except BenchError as exc:
                        record = {"error": str(exc)}
                    runs.append({"round": round_no + 1, "part": part, "streams": streams, "target": target.name,
                                 **record})
                    ctx.done()
    return runs


def run(ctx: RunContext) -> ScenarioResult:
    settings = _settings(ctx)
    tools = require_tools(["nginx", "h2load"])
    cores = plan_cores(ctx.note)
    parts = settings["parts"]
    per_round = len(settings["streams"]) * (3 * ("batching" in parts) + 2 * ("proxying" in parts))
    ctx.begin(1 + per_round * settings["repeat"], "starting the upstreams and proxies")
    failures: list[str] = []
    with peer_workdir() as workdir, contextlib.ExitStack() as stack:
        work = peers_grpc.start_work(tools["h2load"], workdir, cores, settings["work"]["base_ms"],
                                     settings["work"]["per_item_us"])
        stack.callback(work.services()[0].stop)
        static = peers_grpc.start_static(tools["nginx"], tools["h2load"], workdir, cores)
        stack.callback(static.services()[0].stop)
        proxies: list[Peer] = []
        for name in ("nginx", "meshbatch"):
            try:
                if name == "nginx":
                    peer = peers_grpc.start_nginx(tools["nginx"], tools["h2load"], workdir, cores, work.port,
                                                  static.port)
                else:
                    peer = peers_grpc.start_meshbatch(tools["h2load"], workdir, cores, work.port, static.port,
                                                      settings["batch"])
            except BenchError as exc:
                failures.append(f"{name} did not start: {exc}")
                continue
            stack.callback(peer.services()[0].stop)
            proxies.append(peer)
        ctx.done()
        plan: dict[str, tuple[list[Peer], Peer]] = {}
        if "batching" in settings["parts"]:
            plan["batching"] = ([Peer("direct", work.port, None), *proxies], work)
        if "proxying" in settings["parts"]:
            plan["proxying"] = (proxies, static)
        runs = _runs(ctx, settings, plan, tools["h2load"], workdir)
        resources = scenario_proxy._resources(proxies, work)
    failures += [f"{r['part']} {r['target']} {r['streams']} streams: {r['error']}" for r in runs if "error" in r]
    versions = peers.versions(tools)
    versions["h2load"] = tool_version([tools["h2load"], "--version"])
    data = {
        "scenario": NAME,
        "mode": "quick" if ctx.quick else "full",
        "machine": machine_facts(versions),
        "cores": cores.describe(),
        "settings": settings,
        "targets": ["direct", *(p.name for p in proxies)],
        "summary": grpc_report.summary(runs, settings),
        "resources": resources,
        "failures": failures,
        "raw": {"closed_loop": runs},
    }
    return ScenarioResult(data=data, markdown=grpc_report.markdown(data), failures=failures)


def render(data: dict[str, Any]) -> str:
    return grpc_report.markdown(data)
