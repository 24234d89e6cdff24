"""Scenario `proxy`: plain proxying overhead of meshbatch beside nginx, haproxy and no proxy at all.

One nginx upstream answers a 2-byte body. nginx, haproxy and meshbatch proxy to it, each with one worker
pinned to the proxy core; the upstream and the load generators share the other core. Closed loop (wrk,
keep-alive) gives peak requests/s and latency; open loop at fixed rates gives the latency each proxy adds over
going straight to the upstream. Rounds are interleaved, and the order of targets rotates from round to round.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import peers, proxy_report
from .common import (
    BenchError,
    CorePlan,
    core_times,
    core_usage,
    cpu_seconds,
    machine_facts,
    peak_rss_kib,
    peer_workdir,
    plan_cores,
    require_tools,
)
from .peers import Peer
from .runner import RunContext, ScenarioResult
from .wrk import run_wrk, write_script

NAME = "proxy"
SUMMARY = "proxying overhead: meshbatch vs nginx vs haproxy vs no proxy (wrk closed loop, fixed-rate open loop)"
ORDER = 10
BASELINE = "no proxy"
PROXIES = ("nginx", "haproxy", "meshbatch")
LOADGEN = Path(__file__).with_name("loadgen.py")


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text}")
    return value


def _rates(text: str) -> list[float]:
    try:
        return [_positive(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"comma-separated positive numbers: {text}") from exc


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--targets", default=",".join(PROXIES), help="proxies to measure, comma-separated")
    parser.add_argument("--duration", type=_positive, default=None, help="seconds per wrk run (10; --quick 1)")
    parser.add_argument("--connections", type=int, default=64, help="wrk keep-alive connections")
    parser.add_argument("--rates", type=_rates, default=[20.0, 200.0, 2000.0], help="open-loop rates, req/s")
    parser.add_argument("--open-duration", type=_positive, default=None, help="seconds per open-loop run (10; 1)")
    parser.add_argument("--no-open", action="store_true", help="closed loop only")


def _settings(ctx: RunContext) -> dict[str, Any]:
    args = ctx.args
    chosen = {t.strip() for t in str(args.targets).split(",") if t.strip()}
    unknown = sorted(chosen - set(PROXIES))
    if unknown:
        raise BenchError(f"unknown targets {unknown}; choose from {', '.join(PROXIES)}")
    rates = [] if args.no_open else list(args.rates)
    if args.connections < 1:
        raise BenchError("--connections must be >= 1")
    return {
        "targets": [BASELINE, *(p for p in PROXIES if p in chosen)],
        "repeat": ctx.repeat,
        "closed_seconds": args.duration if args.duration is not None else (1.0 if ctx.quick else 10.0),
        "closed_warmup_seconds": 0.0 if ctx.quick else 2.0,
        "connections": int(args.connections),
        "wrk_threads": 1,
        "open_rates": rates,
        "open_seconds": args.open_duration if args.open_duration is not None else (1.0 if ctx.quick else 10.0),
        "open_warmup_seconds": 0.3 if ctx.quick else 1.0,
        "body": peers.BODY.decode(),
    }


def _start(name: str, tools: dict[str, str], workdir: Path, cores: CorePlan, upstream: int) -> Peer:
    if name == "nginx":
        return peers.start_nginx(tools["nginx"], workdir, cores, upstream)
    if name == "haproxy":
        return peers.start_haproxy(tools["haproxy"], workdir, cores, upstream)
    return peers.start_meshbatch(workdir, cores, upstream)


def _rotated(items: list[Peer], shift: int) -> list[Peer]:
    shift %= len(items)
    return items[shift:] + items[:shift]


def _measured(peer: Peer, upstream: Peer, cores: CorePlan, action: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run `action` (a load generator in a child process), adding what the run cost and who else ran.

    CPU seconds of the proxy, the upstream and the load generator (children's rusage), and for each of the two
    cores the share that went to anything else: other processes of a shared machine, or the hypervisor.
    """
    proxy_pids = peer.pids()
    upstream_pids = upstream.pids()
    proxy_before, upstream_before = cpu_seconds(proxy_pids), cpu_seconds(upstream_pids)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cores_before, started = core_times(), time.perf_counter()
    record = action()
    wall = time.perf_counter() - started
    usage = core_usage(cores_before, core_times())
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    proxy_cpu = cpu_seconds(proxy_pids) - proxy_before if proxy_pids else None
    upstream_cpu = cpu_seconds(upstream_pids) - upstream_before
    load_cpu = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
    record.update(proxy_cpu_s=proxy_cpu, upstream_cpu_s=upstream_cpu, load_cpu_s=load_cpu, core_usage=usage)
    if proxy_cpu is not None:
        record["proxy_core_busy"] = proxy_cpu / wall
    record["proxy_core_foreign"] = _foreign(usage, cores.proxy, (proxy_cpu or 0.0) / wall)
    record["load_core_foreign"] = _foreign(usage, cores.load, (upstream_cpu + load_cpu) / wall)
    for service in (*peer.services(), upstream.service):
        if service is not None and not service.alive():
            raise BenchError(f"{service.name} exited during the run:\n{service.log_tail()}")
    return record


def _foreign(usage: dict[str, Any], core: int | None, ours: float) -> float | None:
    """The share of `core` that went to something other than our own processes (`ours`, in cores)."""
    if core is None or str(core) not in usage:
        return None
    return max(0.0, float(usage[str(core)]["busy"] + usage[str(core)]["steal"]) - ours)


def _verdict(done: int, errors: int, reasons: object) -> str | None:
    """A run whose answers were more than 1% errors does not count: its figures say nothing about speed."""
    if done == 0 or errors > 0.01 * (done + errors):
        return f"{errors} errors beside {done} good answers: {reasons}"
    return None


def _closed_loop(
    ctx: RunContext, settings: dict[str, Any], targets: list[Peer], upstream: Peer, wrk: str, script: Path
) -> list[dict[str, Any]]:
    cores = plan_cores()

    def once(peer: Peer, seconds: float) -> dict[str, Any]:
        kw: dict[str, Any] = {"connections": settings["connections"], "cores": cores, "script": script}
        return run_wrk(wrk, peer.port, seconds=seconds, **kw).as_dict()

    if settings["closed_warmup_seconds"] > 0:
        for peer in targets:
            ctx.step(f"warm-up {peer.name}")
            once(peer, settings["closed_warmup_seconds"])
            ctx.done()
    runs: list[dict[str, Any]] = []
    for round_no in range(settings["repeat"]):
        for peer in _rotated(targets, round_no):
            ctx.step(f"wrk {peer.name}, round {round_no + 1}/{settings['repeat']}")
            try:
                record = _measured(peer, upstream, cores, functools.partial(once, peer, settings["closed_seconds"]))
            except BenchError as exc:
                record = {"error": str(exc)}
            if "requests" in record:
                verdict = _verdict(record["requests"] - record["errors"], record["errors"], "wrk")
                if verdict:
                    record["error"] = verdict
            if "requests" in record and record["proxy_cpu_s"] is not None and record["requests"]:
                record["proxy_cpu_us_per_request"] = record["proxy_cpu_s"] / record["requests"] * 1e6
            runs.append({"round": round_no + 1, "target": peer.name, **record})
            ctx.done()
    return runs


def _loadgen(port: int, rate: float, settings: dict[str, Any], cores: CorePlan) -> dict[str, Any]:
    seconds, warmup = settings["open_seconds"], settings["open_warmup_seconds"]
    argv = [*cores.prefix("load"), sys.executable, str(LOADGEN), "--port", str(port), "--rate", str(rate)]
    argv += ["--duration", str(seconds), "--warmup", str(warmup)]
    limit = seconds + warmup + 60
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=limit, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"open-loop load did not finish within {limit:.0f}s") from exc
    if done.returncode != 0:
        raise BenchError(f"open-loop load exited {done.returncode}: {done.stderr.strip()[-1000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _open_loop(ctx: RunContext, settings: dict[str, Any], targets: list[Peer], upstream: Peer) -> list[dict[str, Any]]:
    cores = plan_cores()
    runs: list[dict[str, Any]] = []
    for rate in settings["open_rates"]:
        for round_no in range(settings["repeat"]):
            for peer in _rotated(targets, round_no):
                ctx.step(f"{rate:g} rps {peer.name}, round {round_no + 1}/{settings['repeat']}")
                try:
                    action = functools.partial(_loadgen, peer.port, rate, settings, cores)
                    record = _measured(peer, upstream, cores, action)
                except BenchError as exc:
                    record = {"error": str(exc)}
                if "ok" in record:
                    verdict = _verdict(record["ok"], record["errors"], record["error_reasons"])
                    if verdict:
                        record["error"] = verdict
                runs.append({"rate": rate, "round": round_no + 1, "target": peer.name, **record})
                ctx.done()
    return runs


def _resources(targets: list[Peer], upstream: Peer) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for peer in targets:
        tree = peer.pids() if peer.service is not None else upstream.pids()
        if not tree:
            continue
        found[peer.name] = {
            "role": "proxy" if peer.service is not None else "upstream",
            "processes": len(tree),
            "peak_rss_kib": peak_rss_kib(tree),
            "cpu_s_total": cpu_seconds(tree),
        }
    return found


def run(ctx: RunContext) -> ScenarioResult:
    return measure(ctx, NAME, _start)


Starter = Callable[[str, dict[str, str], Path, CorePlan, int], Peer]


def measure(ctx: RunContext, scenario: str, start: Starter, prepare: Callable[[Path], None] | None = None,
            ) -> ScenarioResult:
    """The proxy scenario's measurements for the targets `start` brings up in front of the nginx upstream (the
    `mtls` scenario measures sidecar pairs with it); `prepare(workdir)` runs first (its certificates)."""
    settings = _settings(ctx)
    tools = require_tools(["nginx", "haproxy", "wrk"])
    cores = plan_cores(ctx.note)
    n_targets, repeat = len(settings["targets"]), settings["repeat"]
    warmups = n_targets if settings["closed_warmup_seconds"] > 0 else 0
    ctx.begin(1 + warmups + n_targets * repeat * (1 + len(settings["open_rates"])), "starting peers")
    failures: list[str] = []
    with peer_workdir() as workdir, contextlib.ExitStack() as stack:
        if prepare is not None:
            prepare(workdir)
        upstream = peers.start_upstream(tools["nginx"], workdir, cores)
        assert upstream.service is not None
        stack.callback(upstream.service.stop)
        targets = [Peer(BASELINE, upstream.port, None)]
        for name in settings["targets"][1:]:
            try:
                peer = start(name, tools, workdir, cores, upstream.port)
            except BenchError as exc:
                failures.append(f"{name} did not start: {exc}")
                continue
            for service in peer.services():
                stack.callback(service.stop)
            targets.append(peer)
        ctx.done()
        script = write_script(workdir)
        closed = _closed_loop(ctx, settings, targets, upstream, tools["wrk"], script)
        opened = _open_loop(ctx, settings, targets, upstream)
        resources = _resources(targets, upstream)
    failures += [f"{r['target']}: {r['error']}" for r in (*closed, *opened) if "error" in r]
    data = {
        "scenario": scenario,
        "mode": "quick" if ctx.quick else "full",
        "machine": machine_facts(peers.versions(tools)),
        "cores": cores.describe(),
        "settings": settings,
        "targets": [t.name for t in targets],
        "closed_loop": proxy_report.closed_summary(closed, [t.name for t in targets]),
        "open_loop": proxy_report.open_summary(opened, [t.name for t in targets], settings["open_rates"]),
        "resources": resources,
        "failures": failures,
        "raw": {"closed_loop": closed, "open_loop": [_without_cdf(r) for r in opened]},
    }
    return ScenarioResult(data=data, markdown=proxy_report.markdown(data), failures=failures)


def _without_cdf(run: dict[str, Any]) -> dict[str, Any]:
    """A raw run without its latency CDF: the summary keeps the CDF of each median run, enough for plots."""
    return {k: v for k, v in run.items() if k != "cdf_ms"}


def plot(data: dict[str, Any], out_dir: Path) -> list[Path]:
    from . import proxy_plots  # matplotlib is needed for the pictures only

    return proxy_plots.plot(data, out_dir)
