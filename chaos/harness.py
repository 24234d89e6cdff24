"""The shape most scenarios share: upstreams and a proxy, bounded load with exact accounting, faults at chosen
points of the load (by progress: "when 30% of the planned requests have their outcome", never a timer), then
settling, the leak checks and the accounting."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .accounting import Bars, Sides, account, retries_of
from .common import ChaosError, Context, ScenarioResult, wait_until
from .loadgen import LoadGen, StreamSpec
from .mesh import Proxy, read_access_log
from .upstream import IdFleet


def default_streams(short: bool, sync_rate: float = 250.0, batched_rate: float = 500.0) -> list[StreamSpec]:
    """A plain route and a batching route under steady load."""
    return [StreamSpec("sync", "sync", "/sync", "S", connections=8, rate=sync_rate),
            StreamSpec("batched", "batched", "/batched", "B", connections=48, rate=batched_rate, id_field="item.id")]


@dataclass
class Step:
    at: float  # progress (0..1) of the planned requests
    label: str
    action: Callable[[], Any]


def fault_cycles(cycles: int, start: float, length: float, begin: tuple[str, Callable[[], Any]],
                 end: tuple[str, Callable[[], Any]]) -> list[Step]:
    """`cycles` faults spread over the load: the i-th begins at (i + start) / cycles of the planned requests and
    ends `length` / cycles later; each label gets its number, e.g. "kill upstream b (2/4)"."""
    steps: list[Step] = []
    for i in range(cycles):
        at = (i + start) / cycles
        steps += [Step(at, f"{begin[0]} ({i + 1}/{cycles})", begin[1]),
                  Step(at + length / cycles, f"{end[0]} ({i + 1}/{cycles})", end[1])]
    return steps


@dataclass
class Timeline:
    """When each step ran, seconds after the load started."""

    events: list[tuple[float, str]] = field(default_factory=list)

    def mark(self, load: LoadGen, label: str) -> None:
        self.events.append((round(load.elapsed, 3), label))


def planned_requests(specs: Iterable[StreamSpec], seconds: float) -> int:
    return int(sum((s.rate or 0.0) * seconds for s in specs))


def drive(ctx: Context, load: LoadGen, planned: int, steps: list[Step], timeline: Timeline,
          idle_timeout: float = 30.0) -> None:
    """Start `load`, run each step when its share of `planned` requests has an outcome, stop the load once
    `planned` requests were scheduled, and wait for every outcome."""
    rate = sum(s.spec.rate or 0.0 for s in load.streams.values()) or 1.0
    slack = 3 * planned / rate + 20  # a generous bound: three times the planned duration
    load.start()
    ctx.live(load)
    try:
        for step in sorted(steps, key=lambda s: s.at):
            target = step.at * planned
            wait_until(lambda: load.settled() >= target, slack, f"progress {step.at:.0%}")  # noqa: B023
            ctx.status(step.label)
            timeline.mark(load, step.label)
            step.action()
        wait_until(lambda: sum(s.total for s in load.streams.values()) >= planned, slack, "the planned requests")
    finally:
        load.stop()
        if not load.wait_idle(idle_timeout):
            raise ChaosError("the load generator did not finish within its timeout")
        timeline.mark(load, "load stopped")
        ctx.live(None)


def leak_checks(result: ScenarioResult, proxy: Proxy, floor: dict[str, float], label: str = "proxy",
                timeout: float = 8.0) -> dict[str, Any]:
    """Back to the floor after the load: open fds, live asyncio tasks, empty batch queues."""
    after = proxy.settle(floor, timeout)
    result.figures.setdefault("resources", {})[label] = {
        "fds_before": floor["fds"], "fds_after": after.get("fds"), "tasks_before": floor["tasks"],
        "tasks_after": after.get("tasks"), "rss_mib_before": round(floor["rss_mib"], 1),
        "rss_mib_after": round(float(after.get("rss_mib", 0.0)), 1), "settled": after.get("settled")}
    result.check(f"{label}: no fd leaked", after.get("fds", 1e9) <= floor["fds"],
                 f"open fds {floor['fds']:.0f} before, {after.get('fds')} after settling")
    result.check(f"{label}: no task leaked", after.get("tasks", 1e9) <= floor["tasks"],
                 f"asyncio tasks {floor['tasks']:.0f} before, {after.get('tasks')} after settling")
    result.check(f"{label}: batch queues empty", proxy.batchers_idle(), "queued and in-flight items back to 0")
    return after


def proxy_sides(proxy: Proxy, fleet: IdFleet | None, routes: list[str], log: Path | None = None,
                baseline: dict[str, int] | None = None) -> Sides:
    """What the upstreams and the proxy saw; `baseline`: the proxy's answer counts before the load (warm-up)."""
    text = proxy.metrics()
    before = baseline or {}
    log_ids = None
    if log is not None:
        wait_until(lambda: _log_complete(log, proxy, text, routes), 5, "the access log to be written")
        log_ids = read_access_log(log)[0]
    return Sides(upstream_ids=fleet.id_counts() if fleet is not None else None,
                 proxy_answered={r: proxy.answered(r, text) - before.get(r, 0) for r in routes}, log_ids=log_ids,
                 retries=retries_of(text, routes))


def _log_complete(log: Path, proxy: Proxy, text: str, routes: list[str]) -> bool:
    per_route = read_access_log(log)[1]
    return all(per_route.get(r, 0) >= proxy.answered(r, text) for r in routes)


def run_standard(ctx: Context, result: ScenarioResult, *, fleet: IdFleet, proxy: Proxy, specs: list[StreamSpec],
                 seconds: float, steps: list[Step], bars: Bars, log: Path | None = None) -> LoadGen:
    """The whole shape for one proxy: floor, load with steps, settle and leak checks, accounting."""
    floor = proxy.floor()
    load = LoadGen(proxy.address(), specs)
    timeline = Timeline()
    planned = planned_requests(specs, seconds)
    started = time.monotonic()
    drive(ctx, load, planned, steps, timeline)
    result.figures["load_seconds"] = round(time.monotonic() - started, 2)
    result.figures["timeline"] = timeline.events
    ctx.status("settling")
    leak_checks(result, proxy, floor)
    routes = sorted({s.route for s in specs})
    account(result, load, proxy_sides(proxy, fleet, routes, log), bars)
    return load


__all__ = ["Step", "Timeline", "default_streams", "drive", "leak_checks", "planned_requests", "proxy_sides",
           "run_standard"]
