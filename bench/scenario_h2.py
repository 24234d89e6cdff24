"""Scenario `h2`: HTTP/2 termination, meshbatch beside nginx: h2load (h2c with prior knowledge) through each to
the same HTTP/1.1 upstream.

The method of the `proxy` scenario: one nginx upstream answering a 2-byte body, each proxy one worker pinned to
the proxy core, the upstream and the load generator on the other core, rounds interleaved with the order of the
targets rotating. h2load runs closed loop: `connections` connections of `streams` concurrent streams each. The
upstream itself speaks HTTP/1.1 only, so there is no no-proxy baseline here: the ratios are to nginx.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
from pathlib import Path
from typing import Any

from . import h2_report, peers, peers_h2, scenario_proxy
from .common import BenchError, CorePlan, machine_facts, peer_workdir, plan_cores, require_tools, tool_version
from .h2load import run_h2load
from .peers import Peer
from .runner import RunContext, ScenarioResult

NAME = "h2"
SUMMARY = "HTTP/2 termination: meshbatch vs nginx, h2load h2c through each to the same HTTP/1.1 upstream"
ORDER = 12
PROXIES = ("nginx", "meshbatch")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--targets", default=",".join(PROXIES), help="proxies to measure, comma-separated")
    parser.add_argument("--duration", type=scenario_proxy._positive, default=None,
                        help="seconds per h2load run (10; --quick 1)")
    parser.add_argument("--connections", type=int, default=16, help="h2load connections")
    parser.add_argument("--streams", type=int, default=10, help="h2load concurrent streams per connection (-m)")
    parser.add_argument("--codec", choices=("auto", "http2"), default="auto", help="meshbatch's listener codec")


def _settings(ctx: RunContext) -> dict[str, Any]:
    args = ctx.args
    chosen = {t.strip() for t in str(args.targets).split(",") if t.strip()}
    unknown = sorted(chosen - set(PROXIES))
    if unknown or not chosen:
        raise BenchError(f"unknown targets {unknown}; choose from {', '.join(PROXIES)}")
    if args.connections < 1 or args.streams < 1:
        raise BenchError("--connections and --streams must be >= 1")
    return {
        "targets": [p for p in PROXIES if p in chosen],
        "repeat": ctx.repeat,
        "seconds": args.duration if args.duration is not None else (1.0 if ctx.quick else 10.0),
        "warmup_seconds": 0.0 if ctx.quick else 2.0,
        "connections": int(args.connections),
        "streams": int(args.streams),
        "h2load_threads": 1,
        "codec": str(args.codec),
        "protocol": "h2c, prior knowledge",
        "body": peers.BODY.decode(),
    }


def _start(name: str, tools: dict[str, str], workdir: Path, cores: CorePlan, upstream: int, codec: str) -> Peer:
    if name == "nginx":
        return peers_h2.start_nginx_h2(tools["nginx"], tools["h2load"], workdir, cores, upstream)
    return peers_h2.start_meshbatch_h2(tools["h2load"], workdir, cores, upstream, codec)


def _closed_loop(ctx: RunContext, settings: dict[str, Any], targets: list[Peer], upstream: Peer, h2load: str,
                 workdir: Path) -> list[dict[str, Any]]:
    cores = plan_cores()
    log = workdir / "h2load.log"

    def once(peer: Peer) -> dict[str, Any]:
        return run_h2load(h2load, peer.port, settings["seconds"], settings["connections"], settings["streams"],
                          cores, log, warmup=settings["warmup_seconds"])

    runs: list[dict[str, Any]] = []
    for round_no in range(settings["repeat"]):
        for peer in scenario_proxy._rotated(targets, round_no):
            ctx.step(f"h2load {peer.name}, round {round_no + 1}/{settings['repeat']}")
            try:
                record = scenario_proxy._measured(peer, upstream, cores, functools.partial(once, peer))
            except BenchError as exc:
                record = {"error": str(exc)}
            if "requests" in record:
                verdict = scenario_proxy._verdict(record["requests"] - record["errors"], record["errors"], "h2load")
                if verdict:
                    record["error"] = verdict
                elif record["proxy_cpu_s"] is not None and record["requests"]:
                    # h2load's warm-up is not counted in its requests, but the proxy's CPU was spent on it too
                    counted = settings["seconds"] / (settings["seconds"] + settings["warmup_seconds"])
                    record["proxy_cpu_us_per_request"] = record["proxy_cpu_s"] * counted / record["requests"] * 1e6
            runs.append({"round": round_no + 1, "target": peer.name, **record})
            ctx.done()
    return runs


def run(ctx: RunContext) -> ScenarioResult:
    settings = _settings(ctx)
    tools = require_tools(["nginx", "h2load"])
    cores = plan_cores(ctx.note)
    ctx.begin(1 + len(settings["targets"]) * settings["repeat"], "starting peers")
    failures: list[str] = []
    with peer_workdir() as workdir, contextlib.ExitStack() as stack:
        upstream = peers.start_upstream(tools["nginx"], workdir, cores)
        assert upstream.service is not None
        stack.callback(upstream.service.stop)
        targets: list[Peer] = []
        for name in settings["targets"]:
            try:
                peer = _start(name, tools, workdir, cores, upstream.port, settings["codec"])
            except BenchError as exc:
                failures.append(f"{name} did not start: {exc}")
                continue
            for service in peer.services():
                stack.callback(service.stop)
            targets.append(peer)
        ctx.done()
        closed = _closed_loop(ctx, settings, targets, upstream, tools["h2load"], workdir)
        resources = scenario_proxy._resources(targets, upstream)
    failures += [f"{r['target']}: {r['error']}" for r in closed if "error" in r]
    versions = peers.versions(tools)
    versions["h2load"] = tool_version([tools["h2load"], "--version"])
    names = [t.name for t in targets]
    data = {
        "scenario": NAME,
        "mode": "quick" if ctx.quick else "full",
        "machine": machine_facts(versions),
        "cores": cores.describe(),
        "settings": settings,
        "targets": names,
        "closed_loop": h2_report.summary(closed, names),
        "resources": resources,
        "failures": failures,
        "raw": {"closed_loop": closed},
    }
    return ScenarioResult(data=data, markdown=h2_report.markdown(data), failures=failures)


def render(data: dict[str, Any]) -> str:
    return h2_report.markdown(data)
