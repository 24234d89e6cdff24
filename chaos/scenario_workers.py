"""A worker of `meshbatch run --workers 2` SIGKILLed under load, then started again by its supervisor.

What the clients of the killed worker see: the requests it held in flight are not answered, but none hangs (the
kernel closes the dead process's connections: their outcome is `closed`, never a timeout); new connections go
to the other worker at once; the supervisor starts the killed one again and counts it; at the end SIGTERM drains
both workers and the supervisor exits 0."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

from .accounting import Sides, stream_figures
from .common import Context, Scenario, ScenarioResult, wait_until
from .harness import Step, Timeline, default_streams, drive, planned_requests
from .loadgen import OUTCOMES, PENDING, TIMEOUT, LoadGen
from .mesh import Proxy, standard
from .upstream import IdFleet


def worker_kill(ctx: Context) -> ScenarioResult:
    result = ScenarioResult("worker-kill", SCENARIOS[0].title)
    work = ctx.dir("worker-kill")
    fleet = IdFleet(work).start("a", "b", "c")
    kills: list[int] = []
    try:
        proxy = Proxy(work / "proxy.yaml", standard(fleet.addresses()), run_args=("--workers", "2"))
        try:
            def kill() -> None:
                worker = len(kills) % 2
                pid = proxy.json("/workers")["workers"][worker]["pid"]
                os.kill(pid, signal.SIGKILL)
                kills.append(pid)

            count = 1 if ctx.short else 4
            steps = [Step((i + 0.5) / (count + 0.5), f"SIGKILL worker {i % 2} ({i + 1}/{count})", kill)
                     for i in range(count)]
            specs = default_streams(ctx.short)
            load = LoadGen(proxy.address(), specs)
            timeline = Timeline()
            started = time.monotonic()
            drive(ctx, load, planned_requests(specs, ctx.seconds(4, 40)), steps, timeline)
            result.figures["load_seconds"] = round(time.monotonic() - started, 2)
            result.figures["timeline"] = timeline.events
            outcomes: Counter[str] = Counter()
            for stream in load.streams.values():
                outcomes.update(OUTCOMES[o] for o in stream.outcome)
            result.figures["outcomes"] = dict(outcomes)
            # A request closed by the kill that its upstream received is lost (its answer died with the worker); one
            # the upstream never saw was not admitted.
            sides = Sides(upstream_ids=fleet.id_counts())
            result.figures["streams"] = {s.spec.name: stream_figures(s, sides) for s in load.streams.values()}
            pending = sum(1 for s in load.streams.values() for o in s.outcome if o == PENDING)
            hung = sum(1 for s in load.streams.values() for o in s.outcome if o == TIMEOUT)
            result.check("one fate per request", pending == 0, f"{pending} request(s) without an outcome")
            result.check("no request hung: those of a killed worker were closed, not left to time out", hung == 0,
                         f"{hung} request(s) timed out")
            ctx.status("settling")
            workers = wait_until(lambda: (w := proxy.json("/workers")["workers"]) and all(x["ready"] for x in w)
                                 and w, 15, "both workers ready again")
            restarts = sum(w["restarts"] for w in workers)
            result.figures["restarts"] = restarts
            result.check("every killed worker was started again", restarts == len(kills) and
                         not {w["pid"] for w in workers} & set(kills), f"{restarts} restart(s), {len(kills)} kill(s)")
            result.check("the supervisor counted them", proxy.metric("meshbatch_worker_restarts_total") == len(kills),
                         "meshbatch_worker_restarts_total")
            mark = proxy.process.mark()
            code = proxy.terminate()
            line = proxy.process.wait_for_line("meshbatch: drained", 1, start=mark)
            result.check("SIGTERM drained both workers and the supervisor exited 0", code == 0,
                         f"exit {code}: {line}")
        finally:
            if proxy.alive:
                proxy.terminate()
    finally:
        fleet.close()
    return result


SCENARIOS = [Scenario("worker-kill", "A worker of run --workers 2 is SIGKILLed under load and started again", 15,
                      worker_kill)]
