"""Upstream faults under load: an upstream SIGKILLed then started again on its port; an upstream that hangs
(SIGSTOP: the kernel still accepts connections, nothing is read or answered) then resumes.

Set-up: three upstream processes, one proxy with a plain route and a batching route (retries on connect
failure, reset and gateway errors; per-try timeout 400 ms; an endpoint breaker and outlier detection)."""

from __future__ import annotations

import contextlib
import time
import urllib.request
from collections.abc import Callable

from .accounting import Bars
from .common import Context, Scenario, ScenarioResult, wait_until
from .harness import default_streams, fault_cycles, run_standard
from .mesh import Proxy, standard
from .upstream import IdFleet


def kill_restart(ctx: Context) -> ScenarioResult:
    result = ScenarioResult("upstream-kill", SCENARIOS[0].title)
    work = ctx.dir("upstream-kill")
    fleet = IdFleet(work).start("a", "b", "c")
    log = work / "access.log"
    try:
        proxy = Proxy(work / "proxy.yaml", standard(fleet.addresses(), log=log))
        try:
            victim = fleet["b"]
            marks: list[int] = []

            def kill() -> None:
                victim.kill()

            def revive() -> None:
                marks.append(victim.lines())
                victim.revive()

            steps = fault_cycles(1 if ctx.short else 4, 0.15, 0.35, ("kill upstream b", kill),
                                 ("restart upstream b", revive))
            run_standard(ctx, result, fleet=fleet, proxy=proxy, specs=default_streams(ctx.short),
                         seconds=ctx.seconds(4, 40), steps=steps, bars=Bars(min_success=0.995, max_latency_s=2.5),
                         log=log)
            served = victim.lines() - marks[-1]
            result.figures["revived_upstream_served"] = served
            if not served:  # a loaded machine stretches the run: its ejection may outlast the load; keep calling
                served = serves_again(proxy, lambda: victim.lines() - marks[-1], 10.0)
                result.notes.append(f"upstream b served again only after the load ({served} id(s) within 10 s)")
            result.check("the restarted upstream serves again", served > 0,
                         f"upstream b received {served} id(s) after its last restart")
        finally:
            proxy.terminate()
    finally:
        fleet.close()
    return result


def serves_again(proxy: Proxy, served: Callable[[], int], timeout: float) -> int:
    """Calls through the plain route, one at a time, until `served()` counts some or `timeout` passes."""
    deadline = time.monotonic() + timeout
    url = proxy.process.url("main", "/sync/again")
    while (count := served()) == 0 and time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            urllib.request.urlopen(url, timeout=2).close()
    return count


def hang(ctx: Context) -> ScenarioResult:
    result = ScenarioResult("upstream-hang", SCENARIOS[1].title)
    work = ctx.dir("upstream-hang")
    fleet = IdFleet(work).start("a", "b", "c")
    log = work / "access.log"
    try:
        proxy = Proxy(work / "proxy.yaml", standard(fleet.addresses(), log=log))
        try:
            victim = fleet["b"]
            steps = fault_cycles(1 if ctx.short else 4, 0.15, 0.4, ("upstream b hangs", victim.pause),
                                 ("upstream b resumes", victim.resume))
            # Route timeout 2 s, per-try timeout 400 ms: a caller whose first try hung is retried elsewhere.
            run_standard(ctx, result, fleet=fleet, proxy=proxy, specs=default_streams(ctx.short),
                         seconds=ctx.seconds(4, 40), steps=steps, bars=Bars(min_success=0.995, max_latency_s=2.5),
                         log=log)
            # The hung upstream answers what it had queued once resumed: those late receipts are the duplicate
            # deliveries the retries allow (their callers were answered by another upstream).
            wait_until(lambda: victim.proc is not None and victim.proc.poll() is None, 5, "upstream b alive")
        finally:
            proxy.terminate()
    finally:
        fleet.close()
    return result


SCENARIOS = [
    Scenario("upstream-kill", "An upstream is SIGKILLed and restarted under load", 10, kill_restart),
    Scenario("upstream-hang", "An upstream hangs (accepts, never answers), then resumes", 20, hang),
]
