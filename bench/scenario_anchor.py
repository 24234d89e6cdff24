"""Scenario `anchor`: one sidecar's CPU and memory at 1,000 req/s with 1 KB payloads, mTLS and telemetry on,
beside the figure Istio publishes for its Envoy sidecar (0.20 vCPU and 60 MB), and nginx measured the same way.

    load --POST 1 KB--> outbound sidecar ==mTLS==> inbound sidecar --HTTP--> upstream (nginx, 1 KB answer)

The sidecar pairs and certificates of the `mtls` scenario (bench/peers_mtls.py), with telemetry on: meshbatch's
`/metrics` on both sides scraped every second and its access log written to a file; nginx's access log written
to a file. The open-loop generator (bench/post_loadgen.py) sends `--rate` req/s for `--duration` seconds; a
thread reads each side's CPU seconds (/proc/PID/stat) and VmRSS every 100 ms. A scenario of its own rather than a
part of `bench mtls`: that one measures peak throughput and added latency with tiny bodies; this one holds a
fixed rate with Istio's payload size and reads what each process costs.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from . import anchor_parts, peers, peers_mtls
from .anchor_parts import SIDES
from .common import (
    BenchError,
    Service,
    free_port,
    machine_facts,
    plan_cores,
    process_tree,
    require_tools,
)
from .peers import Peer
from .runner import RunContext, ScenarioResult
from .sampling import ProcessSampler, fixed_rate_load

NAME = "anchor"
SUMMARY = "the published anchor: a sidecar's vCPU and MB at 1,000 req/s, 1 KB, mTLS + telemetry, beside Istio's"
ORDER = 16
TARGETS = ("meshbatch", "nginx")
POST_LOADGEN = Path(__file__).with_name("post_loadgen.py")
SKIP_HEAD_S, SKIP_TAIL_S = 1.5, 0.3  # the generator's start and 1 s warm-up; its final settling


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rate", type=float, default=1000.0, help="requests/s (Istio's figure is per 1,000)")
    parser.add_argument("--duration", type=float, default=None, help="seconds of load (20; --quick 3)")


def _start(name: str, nginx: str, workdir: Path, upstream_port: int, pki: peers_mtls.Pki) -> tuple[Peer, list[int]]:
    """The pair, inbound first; for meshbatch also the two admin ports to scrape."""
    ports = {"out": free_port(), "in": free_port(), "upstream": upstream_port, "admin_out": free_port(),
             "admin_in": free_port()}
    prefix = plan_cores().prefix("proxy")
    if name == "meshbatch":
        confs = anchor_parts.meshbatch_confs(ports, pki, workdir)
        argv = {side: [*prefix, peers.meshbatch_bin(), "run", "--config",
                       str(peers._write(workdir / f"anchor-{side}.yaml", conf))] for side, conf in confs.items()}
        admins = [ports["admin_out"], ports["admin_in"]]
    else:
        confs = anchor_parts.nginx_confs(ports, pki, workdir)
        argv = {side: [*prefix, nginx, "-c", str(peers._write(workdir / f"anchor-{side}.conf", conf)), "-e",
                       "stderr"] for side, conf in confs.items()}
        admins = []
    inbound = Service(f"{name}-inbound", argv["inbound"], workdir)
    try:
        outbound = peers._ready(Service(f"{name}-outbound", argv["outbound"], workdir), ports["out"], timeout=30.0)
    except BaseException:
        inbound.stop()
        raise
    return Peer(name, ports["out"], outbound, companions=(inbound,)), admins


def _lines(paths: list[Path]) -> int:
    return sum(p.read_bytes().count(b"\n") for p in paths if p.is_file())


def measure(peer: Peer, admins: list[int], rate: float, duration: float, logs: list[Path]) -> dict[str, Any]:
    services = dict(zip(SIDES, peer.services(), strict=True))
    pids = {side: process_tree(service.pid) for side, service in services.items()}
    with ProcessSampler(pids, admins) as sampler:
        load = fixed_rate_load(POST_LOADGEN, peer.port, rate, duration, "--body", anchor_parts.payload())
    time.sleep(1.2)  # one more access-log flush
    achieved = float(load["achieved_rps"])
    row: dict[str, Any] = {
        side: anchor_parts.side_figures(anchor_parts.steady(sampler.samples[side], SKIP_HEAD_S, SKIP_TAIL_S),
                                        achieved) | {"processes": len(pids[side])}
        for side in SIDES
    }
    row["pair"] = anchor_parts.pair_figures(row)
    row["load"] = {"achieved_rps": round(achieved, 1), "errors": load["errors"],
                   "p50_ms": load["latency_ms"]["p50"], "p99_ms": load["latency_ms"]["p99"]}
    row["scrapes"] = sampler.scrapes
    row["access_log_lines"] = _lines(logs)
    return row


def run(ctx: RunContext) -> ScenarioResult:
    args = ctx.args
    if not args.rate > 0:
        raise BenchError("--rate must be > 0")
    duration = args.duration if args.duration is not None else (3.0 if ctx.quick else 20.0)
    tools = require_tools(["nginx"])
    results: dict[str, Any] = {}
    ctx.begin(len(TARGETS), "starting")
    with tempfile.TemporaryDirectory(prefix="meshbatch-bench-anchor-") as tmp:
        workdir = Path(tmp)
        pki = peers_mtls.make_pki(workdir)
        port = free_port()
        conf = peers._write(workdir / "anchor-upstream.conf",
                            anchor_parts.upstream_conf(workdir, port, peers.BODY.decode()))
        upstream = Service("upstream", [*plan_cores().prefix("load"), tools["nginx"], "-c", str(conf), "-e",
                                        "stderr"], workdir)
        try:
            peers._ready(upstream, port)
            for name in TARGETS:
                ctx.step(f"{name} pair: {args.rate:g} req/s, 1 KB, for {duration:g}s")
                peer, admins = _start(name, tools["nginx"], workdir, port, pki)
                tag = "meshbatch" if name == "meshbatch" else "nginx"
                logs = [workdir / f"{tag}-out.access.log", workdir / f"{tag}-in.access.log"]
                try:
                    results[name] = measure(peer, admins, float(args.rate), duration, logs)
                finally:
                    for service in peer.services():
                        service.stop()
                ctx.done()
        finally:
            upstream.stop()
    data = {"scenario": NAME, "mode": "quick" if ctx.quick else "full", "rate": args.rate, "duration_s": duration,
            "payload_bytes": anchor_parts.PAYLOAD_BYTES, "istio": anchor_parts.ISTIO, "results": results,
            "machine": machine_facts(peers.versions(tools))}
    return ScenarioResult(data=data, markdown=anchor_parts.render(data))
