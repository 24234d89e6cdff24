"""Callers that go away at random mid-request, on the plain and the batching route: a quarter of the requests
are abandoned, some in the middle of their body, the others within 40 ms of being written (half with a FIN, half
with a reset), while the upstreams take 15 ms per call so that requests are queued or in flight when their caller
leaves. Every caller that stays gets its answer; nothing is wedged (ray#50046), leaked or sent twice."""

from __future__ import annotations

import dataclasses

from .accounting import Bars
from .common import Context, Scenario, ScenarioResult, wait_until
from .harness import Step, default_streams, run_standard
from .loadgen import LoadGen, StreamSpec
from .mesh import Proxy, metric_value, standard
from .upstream import IdFleet


def burst(address: tuple[str, int], spec: StreamSpec, ids: list[str]) -> LoadGen:
    """`ids` sent on a fresh load generator, as fast as its connections allow; returns it when all are settled."""
    load = LoadGen(address, [dataclasses.replace(spec, rate=0.0, abort_share=0.0)]).start()
    load.resend(spec.name, ids)
    wait_until(lambda: load.settled() >= len(ids), 30, "the burst")
    load.stop()
    load.wait_idle(10)
    return load


def disconnects(ctx: Context) -> ScenarioResult:
    result = ScenarioResult("client-disconnect", SCENARIOS[0].title)
    work = ctx.dir("client-disconnect")
    fleet = IdFleet(work).start("a", "b", "c")
    log = work / "access.log"
    try:
        proxy = Proxy(work / "proxy.yaml", standard(fleet.addresses(), log=log))
        try:
            fleet.control(delay_ms=15)
            specs = default_streams(ctx.short)
            for spec in specs:
                spec.abort_share = 0.25
                spec.abort_max_ms = 40.0
            run_standard(ctx, result, fleet=fleet, proxy=proxy, specs=specs, seconds=ctx.seconds(4, 40),
                         steps=[Step(0.5, "callers hang up at random", lambda: None)],
                         bars=Bars(min_success=1.0, max_latency_s=1.0), log=log)
            text = proxy.metrics()
            result.figures["batch_cancelled"] = {
                stage: int(metric_value(text, "meshbatch_batch_cancelled_total", route="batched", stage=stage))
                for stage in ("queued", "sealed", "in_flight")}
            ctx.status("the proxy still answers everyone")
            fleet.control(delay_ms=0)
            answered = {}
            for spec in default_streams(ctx.short):
                after = burst(proxy.address(), spec, [f"probe-{spec.name}-{i}" for i in range(200)])
                answered[spec.name] = after.streams[spec.name].ok
            result.figures["after_burst_2xx"] = answered
            result.check("afterwards, a burst is fully answered", all(n == 200 for n in answered.values()),
                         f"2xx of 200 per route: {answered}")
        finally:
            proxy.terminate()
    finally:
        fleet.close()
    return result


SCENARIOS = [Scenario("client-disconnect", "Clients disconnect at random mid-request (plain and batched)", 80,
                      disconnects)]
