"""Drain handover under load: a new proxy binds the same port (`reuse_port: true`, SO_REUSEPORT) while the old one
serves, then the old one gets SIGTERM: it closes its listening socket first, answers what it holds in flight
(its keep-alive connections close after their answer), and exits 0. The port never stops accepting. The proxies'
own record is their access logs (a drained process's counters leave with it)."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

from .accounting import Bars, Sides, account
from .common import Context, Scenario, ScenarioResult
from .harness import Step, Timeline, default_streams, drive, leak_checks, planned_requests
from .loadgen import LoadGen
from .mesh import Proxy, read_access_log, standard
from .upstream import IdFleet, free_port


def handover(ctx: Context) -> ScenarioResult:
    result = ScenarioResult("drain-handover", SCENARIOS[0].title)
    work = ctx.dir("drain-handover")
    fleet = IdFleet(work).start("a", "b", "c")
    port = free_port()
    logs: list[Path] = []
    exits: list[tuple[int, str]] = []

    def cfg(n: int) -> dict[str, object]:
        logs.append(work / f"access-{n}.log")
        return standard(fleet.addresses(), listen=f"127.0.0.1:{port}", reuse_port=True, log=logs[-1])

    proxies = [Proxy(work / "proxy-0.yaml", cfg(0))]
    try:
        floor = proxies[0].floor()

        def take_over() -> None:
            old = proxies[-1]
            proxies.append(Proxy(work / f"proxy-{len(proxies)}.yaml", cfg(len(proxies))))  # ready: it listens
            mark = old.process.mark()
            old.process.send_signal(signal.SIGTERM)
            code = old.process.wait(15)
            line = old.process.wait_for_line("meshbatch: drained", 1, start=mark)
            exits.append((code, line.partition("meshbatch: ")[2]))

        count = 1 if ctx.short else 6
        steps = [Step((i + 0.5) / (count + 0.5), f"handover {i + 1}/{count}: new proxy, SIGTERM to the old",
                      take_over) for i in range(count)]
        specs = default_streams(ctx.short)
        load = LoadGen(("127.0.0.1", port), specs)
        timeline = Timeline()
        started = time.monotonic()
        drive(ctx, load, planned_requests(specs, ctx.seconds(4, 40)), steps, timeline)
        result.figures["load_seconds"] = round(time.monotonic() - started, 2)
        result.figures["timeline"] = timeline.events
        ctx.status("settling")
        last = proxies[-1]
        leak_checks(result, last, floor, "last proxy")
        text = last.metrics()
        routes = ["batched", "sync"]
        log_ids: Counter[str] = Counter()
        answered: Counter[str] = Counter()
        last_answered = {r: last.answered(r, text) for r in routes}
        from .common import wait_until

        wait_until(lambda: all(read_access_log(logs[-1])[1].get(r, 0) >= n for r, n in last_answered.items()), 5,
                   "the last proxy's access log")
        for log in logs:
            ids, per_route = read_access_log(log)
            log_ids.update(ids)
            answered.update(per_route)
        result.figures["drained"] = [f"exit {code}, {line}" for code, line in exits]
        result.figures["answered_per_process"] = [dict(read_access_log(log)[1]) for log in logs]
        result.check("every old proxy drained and exited 0",
                     len(exits) == count and all(code == 0 and "unfinished=0" in line for code, line in exits),
                     "; ".join(f"exit {c}: {line}" for c, line in exits))
        sides = Sides(upstream_ids=fleet.id_counts(), proxy_answered={r: answered.get(r, 0) for r in routes},
                      log_ids=log_ids, retries={r: 0 for r in routes})
        account(result, load, sides, Bars(min_success=1.0, max_not_admitted=0))
    finally:
        for p in proxies:
            if p.alive:
                p.terminate()
        fleet.close()
    return result


SCENARIOS = [Scenario("drain-handover", "SIGTERM and a new proxy takes over the port (drain handover)", 50,
                      handover)]
