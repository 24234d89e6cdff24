"""The soak: a steady mix (plain, batched, ingested with fsync acknowledgements into SQLite) for 10 minutes
(20 seconds in the short version), RSS, open fds, live tasks and loop lag sampled every second. None may grow without
bound (the second half's slope, see chaos/sampler.py), and the accounting bars hold for the whole run."""

from __future__ import annotations

import time

from .accounting import Bars, account
from .common import Context, Scenario, ScenarioResult, wait_until
from .harness import Timeline, default_streams, drive, leak_checks, planned_requests, proxy_sides
from .loadgen import LoadGen, StreamSpec
from .mesh import Proxy, standard
from .sampler import Sampler, limits_for
from .scenario_ingest import backlog_empty, ingest_route, warm_up
from .upstream import IdFleet


def soak(ctx: Context) -> ScenarioResult:
    result = ScenarioResult("soak", SCENARIOS[0].title)
    work = ctx.dir("soak")
    fleet = IdFleet(work).start("a", "b", "c")
    try:
        cfg = standard(fleet.addresses())
        if ctx.soak_seconds < 400:
            # The batch recorder (for `meshbatch tune`) is a bounded buffer of 65,536 arrivals per route by default,
            # full after ~160 s at 400 items/s: within the first half of the 10-minute soak, not of a short one.
            cfg["recorder"] = {"max_items": 4096}
        cfg["listeners"][0]["routes"].append(ingest_route("events", "fsync", work / "log.db",
                                                          {"type": "sqlite", "path": str(work / "sink.db")}))
        proxy = Proxy(work / "proxy.yaml", cfg)
        try:
            events = StreamSpec("events", "events", "/events", "E", connections=8, rate=100, id_field="event.key")
            warm_up(proxy, [events], 10)
            floor = proxy.floor()
            routes = ["batched", "events", "sync"]
            baseline = {r: proxy.answered(r) for r in routes}
            specs = [*default_streams(ctx.short, sync_rate=200, batched_rate=400), events]
            load = LoadGen(proxy.address(), specs)
            sampler = Sampler(proxy).start()
            timeline = Timeline()
            started = time.monotonic()
            ctx.status(f"steady load for {ctx.soak_seconds:g} s")
            try:
                drive(ctx, load, planned_requests(specs, ctx.soak_seconds), [], timeline)
            finally:
                sampler.stop()
            result.figures["load_seconds"] = round(time.monotonic() - started, 2)
            growth = sampler.growth(limits_for(ctx.soak_seconds))
            result.figures["growth"] = {k: {x: v[x] for x in ("first", "last", "max", "slope_per_hour",
                                                          "slope_error_per_hour", "unit")} for k, v in growth.items()}
            result.figures["recorder_max_items"] = cfg.get("recorder", {}).get("max_items", 65536)
            result.figures["samples"] = len(sampler.samples)
            result.figures["series"] = sampler.samples
            cpu = sampler.samples[-1]["cpu_s"] - sampler.samples[0]["cpu_s"] if sampler.samples else 0.0
            span = sampler.samples[-1]["t"] - sampler.samples[0]["t"] if len(sampler.samples) > 1 else 1.0
            result.figures["proxy_cpu_share"] = round(cpu / span, 3)
            for key, g in growth.items():
                result.check(f"{key} does not grow", g["ok"],
                             f"second-half slope {g['slope_per_hour']} +- {2 * g['slope_error_per_hour']:.2f} "
                             f"{g['unit']} (limit {g['limit_per_hour']}); "
                             f"first {g['first']}, last {g['last']}, max {g['max']}")
            lag = growth["lag_ms"]
            result.check("loop lag stays small", lag["p99_second_half"] <= 100,
                         f"p99 of the 1-second maximum lag over the second half: {lag['p99_second_half']} ms")
            result.check("sampled every second", sampler.errors == 0 and len(sampler.samples) >= 0.8 * span,
                         f"{len(sampler.samples)} samples over {span:.0f} s, {sampler.errors} failed")
            ctx.status("settling")
            wait_until(lambda: backlog_empty(proxy), 30, "the ingest backlog to drain")
            leak_checks(result, proxy, floor)
            account(result, load, proxy_sides(proxy, fleet, routes, baseline=baseline), Bars(min_success=1.0))
        finally:
            proxy.terminate()
    finally:
        fleet.close()
    return result


SCENARIOS = [Scenario("soak", "Soak: steady load, resources sampled every second", 90, soak)]
