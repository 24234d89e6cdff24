"""SIGHUP with a changed config under load: the batching route's policy, the plain route's timeout, the
cluster's balancer and a new route change back and forth, and one reload with a broken config is rejected.
Nothing may fail: a reload is not an outage."""

from __future__ import annotations

import copy
import functools
import signal
from typing import Any

from .accounting import Bars
from .common import Context, Scenario, ScenarioResult
from .harness import Step, default_streams, run_standard
from .mesh import Proxy, standard, sync_route, write_config
from .upstream import IdFleet


def variant(base: dict[str, Any], n: int) -> dict[str, Any]:
    """Config number n: odd ones change the batch policy, a timeout, the balancer, and add a route."""
    cfg = copy.deepcopy(base)
    if n % 2:
        routes = cfg["listeners"][0]["routes"]
        routes[0]["timeout_ms"] = 2500
        routes[1]["batch"].update({"max_items": 16, "max_wait_ms": 3, "max_in_flight": 3})
        routes.append(sync_route("extra"))
        cfg["clusters"][0]["lb"] = "least_request"
    return cfg


def broken(base: dict[str, Any]) -> dict[str, Any]:
    cfg = copy.deepcopy(base)
    cfg["listeners"][0]["routes"][1]["batch"]["max_items"] = 0
    cfg["clusters"][0]["lb"] = "fastest"
    return cfg


def reload(ctx: Context) -> ScenarioResult:
    result = ScenarioResult("reload", SCENARIOS[0].title)
    work = ctx.dir("reload")
    fleet = IdFleet(work).start("a", "b", "c")
    log = work / "access.log"
    try:
        base = standard(fleet.addresses(), log=log)
        proxy = Proxy(work / "proxy.yaml", base)
        try:
            count = 4 if ctx.short else 24
            done = {"ok": 0, "rejected": 0}

            def hup(cfg: dict[str, Any], expect: str) -> None:
                write_config(proxy.path, cfg)
                mark = proxy.process.mark()
                proxy.process.send_signal(signal.SIGHUP)
                proxy.process.wait_for_line(expect, 15, start=mark)

            def good(n: int) -> None:
                hup(variant(base, n), "meshbatch: reloaded version=")
                done["ok"] += 1

            def bad() -> None:
                hup(broken(base), "meshbatch: reload rejected")
                done["rejected"] += 1

            steps = [Step(0.1 + 0.8 * i / count, f"SIGHUP {i + 1}/{count}", functools.partial(good, i + 1))
                     for i in range(count)]
            steps.append(Step(0.1 + 0.8 * (count - 0.5) / count, "SIGHUP with a broken config", bad))
            run_standard(ctx, result, fleet=fleet, proxy=proxy, specs=default_streams(ctx.short),
                         seconds=ctx.seconds(4, 40), steps=steps, bars=Bars(min_success=1.0, max_latency_s=1.0),
                         log=log)
            text = proxy.metrics()
            ok = int(proxy.metric("meshbatch_config_reloads_total", text, result="ok"))
            rejected = int(proxy.metric("meshbatch_config_reloads_total", text, result="rejected"))
            result.figures["reloads"] = {"ok": ok, "rejected": rejected}
            result.check("every reload applied, the broken one rejected",
                         (ok, rejected) == (done["ok"], done["rejected"]),
                         f"{ok} applied (sent {done['ok']}), {rejected} rejected (sent {done['rejected']})")
        finally:
            proxy.terminate()
    finally:
        fleet.close()
    return result


SCENARIOS = [Scenario("reload", "SIGHUP with a changed config under load", 30, reload)]
