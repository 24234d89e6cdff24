"""Scenario `memory`: resident memory of a plain proxy, idle and under a fixed rate, meshbatch beside nginx.

The `proxy` scenario's upstream (nginx, 2-byte body) and proxies (one worker each, pinned to the proxy core), with
the admin listener on for meshbatch and its `/metrics` scraped once a second during the load (metrics on, as a
sidecar is run). For each proxy: the resident set (VmRSS, summed over its processes: nginx's master and worker)
once it is ready and has been idle a moment, then sampled every 100 ms while the open-loop generator sends
`--rate` requests/s for `--duration` seconds; the peak of those samples and the last one are reported. nginx's
figure counts its master and worker both (their shared pages twice), as `ps` does.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from . import peers
from .common import (
    LOOPBACK,
    Service,
    free_port,
    machine_facts,
    plan_cores,
    ratio,
    require_tools,
    status_kib,
    wait_ready,
)
from .peers import Peer
from .runner import RunContext, ScenarioResult
from .sampling import ProcessSampler, fixed_rate_load

NAME = "memory"
SUMMARY = "resident memory of a plain proxy: idle, and under 1,000 req/s with metrics scraped (meshbatch vs nginx)"
ORDER = 12
TARGETS = ("nginx", "meshbatch")
LOADGEN = Path(__file__).with_name("loadgen.py")
GOALS_MB = {"idle": 40.0, "loaded": 60.0}  # issue 18's goals for meshbatch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rate", type=float, default=1000.0, help="requests/s during the loaded phase")
    parser.add_argument("--duration", type=float, default=None, help="seconds of load (20; --quick 3)")
    parser.add_argument("--idle-seconds", type=float, default=None, help="seconds idle before reading (3; 1)")


def rss_kib(pids: list[int]) -> int:
    """The sum of the processes' current resident sizes (VmRSS), in KiB."""
    return status_kib(pids, "VmRSS")


def meshbatch_conf(port: int, admin_port: int, upstream_port: int) -> str:
    return peers.meshbatch_conf(port, upstream_port).replace(f"{LOOPBACK}:0", f"{LOOPBACK}:{admin_port}", 1)


def start_meshbatch(workdir: Path, upstream_port: int) -> tuple[Peer, int]:
    port, admin = free_port(), free_port()
    conf = workdir / "memory.meshbatch.yaml"
    conf.write_text(meshbatch_conf(port, admin, upstream_port))
    argv = [*plan_cores().prefix("proxy"), peers.meshbatch_bin(), "run", "--config", str(conf)]
    service = Service("meshbatch", argv, workdir)
    wait_ready(service, port, peers.BODY, timeout=30.0)
    return Peer("meshbatch", port, service), admin


def measure(peer: Peer, admin_port: int | None, rate: float, duration: float, idle: float) -> dict[str, Any]:
    time.sleep(idle)
    pids = peer.pids()
    idle_kib = rss_kib(pids)
    with ProcessSampler({"proxy": pids}, [admin_port] if admin_port is not None else []) as sampler:
        load = fixed_rate_load(LOADGEN, peer.port, rate, duration)
    rss = [sample.rss_kib for sample in sampler.samples["proxy"]]
    return {
        "idle_mb": round(idle_kib / 1024, 1),
        "loaded_peak_mb": round(max(rss, default=0) / 1024, 1),
        "loaded_end_mb": round(rss[-1] / 1024, 1) if rss else None,
        "processes": len(pids),
        "scrapes": sampler.scrapes,
        "achieved_rps": round(float(load["achieved_rps"]), 1),
        "errors": load["errors"],
        "p99_ms": load["latency_ms"]["p99"],
    }


def run(ctx: RunContext) -> ScenarioResult:
    args = ctx.args
    duration = args.duration if args.duration is not None else (3.0 if ctx.quick else 20.0)
    idle = args.idle_seconds if args.idle_seconds is not None else (1.0 if ctx.quick else 3.0)
    tools = require_tools(["nginx"])
    results: dict[str, Any] = {}
    ctx.begin(len(TARGETS), "starting")
    with tempfile.TemporaryDirectory(prefix="meshbatch-bench-memory-") as tmp:
        workdir = Path(tmp)
        upstream = peers.start_upstream(tools["nginx"], workdir, plan_cores())
        try:
            for name in TARGETS:
                ctx.step(f"{name}: idle, then {args.rate:g} req/s for {duration:g}s")
                admin: int | None = None
                if name == "nginx":
                    peer = peers.start_nginx(tools["nginx"], workdir, plan_cores(), upstream.port)
                else:
                    peer, admin = start_meshbatch(workdir, upstream.port)
                try:
                    results[name] = measure(peer, admin, float(args.rate), duration, idle)
                finally:
                    for service in peer.services():
                        service.stop()
                ctx.done()
        finally:
            if upstream.service is not None:
                upstream.service.stop()
    data = {"scenario": NAME, "mode": "quick" if ctx.quick else "full", "rate": args.rate, "duration_s": duration,
            "results": results, "goals_mb": GOALS_MB, "machine": machine_facts(peers.versions(tools))}
    return ScenarioResult(data=data, markdown=render(data))


def render(data: dict[str, Any]) -> str:
    res = data["results"]
    mesh, nginx = res.get("meshbatch", {}), res.get("nginx", {})
    lines = [f"## Memory: a plain proxy idle, and under {data['rate']:g} req/s with /metrics scraped every second",
             "", "| | meshbatch | nginx | meshbatch / nginx | goal |", "| --- | --- | --- | --- | --- |"]
    for key, label, goal in (("idle_mb", "idle RSS (MB)", "idle"), ("loaded_peak_mb", "RSS under load, peak (MB)",
                                                                      "loaded")):
        r = ratio(mesh.get(key), nginx.get(key))
        lines.append(f"| {label} | {mesh.get(key)} | {nginx.get(key)} | {'' if r is None else f'{r:.1f}x'} | "
                     f"<= {data['goals_mb'][goal]:g} |")
    lines += ["", "| | achieved req/s | errors | p99 (ms) | processes | scrapes |", "| --- | --- | --- | --- | --- "
              "| --- |"]
    for name, row in res.items():
        lines.append(f"| {name} | {row['achieved_rps']} | {row['errors']} | {row['p99_ms']} | {row['processes']} | "
                     f"{row['scrapes']} |")
    lines += ["", f"{data['duration_s']:g} s of load; VmRSS summed over each proxy's processes (`meshbatch bench "
              "memory`)."]
    return "\n".join(lines)
