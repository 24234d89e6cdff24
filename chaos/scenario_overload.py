"""Overload: twice the capacity offered to a batching route with a bounded queue, capacity measured first in the
same run.

Route: json-array batches of up to 16 items, 2 batches in flight, `max_queue: 256`; each upstream call takes
20 ms, so capacity is about 2 x 16 / 20 ms = 1,600 items/s less the proxy's own time (measured, not assumed).
1. Capacity: closed loop, 128 connections (enough to keep both slots busy with full batches), goodput = 2xx/s.
2. Baseline: open loop at a quarter of capacity: p50 latency and error rate.
3. Overload: open loop at 2x capacity (512 connections). Bars: goodput >= 90% of capacity; every refusal is an
   immediate 429 `queue_full` (p99 < 5 ms from the request's write to its answer; in the short run p95 < 5 ms
   and p99 < 25 ms, see FAST_BAR_SHORT); nothing else fails.
4. Recovery: back to a quarter of capacity. Bar: within 1 s, p50 latency and error rate (100 ms windows, by
   scheduled send time) are back to the baseline and stay there: p50 <= 1.5 x baseline + 2 ms, errors <=
   baseline + 1 percentage point.
"""

from __future__ import annotations

from typing import Any

from .accounting import Bars, Sides, account
from .common import Context, Scenario, ScenarioResult, percentile, wait_until
from .harness import leak_checks
from .loadgen import RESPONSE, LoadGen, Stream, StreamSpec
from .mesh import Proxy, batched_route, metric_value, standard
from .upstream import IdFleet

BATCH = {"max_items": 16, "max_in_flight": 2, "max_queue": 256, "max_wait_ms": 5}
UPSTREAM_MS = 20
WINDOW = 0.1  # recovery windows, seconds


FAST_BAR = "p99 < 5 ms"
# The short run (in `make test`) shares two cores between the load generator, the upstreams and the proxy for a few
# seconds of overload: a scheduler or collector pause of a few milliseconds moves its p99 on its own, in any build.
# A refusal that waited in the queue takes tens to hundreds of milliseconds, so these bars still tell the two apart.
FAST_BAR_SHORT = "p95 < 5 ms, p99 < 25 ms"


def _fast(latencies: list[float], short: bool) -> bool:
    if short:
        return percentile(latencies, 0.95) < 0.005 and percentile(latencies, 0.99) < 0.025
    return percentile(latencies, 0.99) < 0.005


def _run(load: LoadGen, seconds: float) -> None:
    load.start()
    stream = next(iter(load.streams.values()))
    wait_until(lambda: load.elapsed >= seconds and stream.total > 0, seconds + 30, "the load phases")
    load.stop()
    load.wait_idle(30)


def goodput(stream: Stream, lo: float, hi: float) -> float:
    """2xx answers completed in [lo, hi), per second."""
    done = sum(1 for i, o in enumerate(stream.outcome)
               if o == RESPONSE and 200 <= stream.status[i] < 300 and lo <= stream.done[i] < hi)
    return done / (hi - lo) if hi > lo else 0.0


def window_stats(stream: Stream, lo: float, hi: float) -> tuple[float, float, int]:
    """p50 latency (from the scheduled time) and error share of the requests scheduled in [lo, hi)."""
    lat: list[float] = []
    errors = 0
    for i, at in enumerate(stream.sched):
        if lo <= at < hi:
            ok = stream.outcome[i] == RESPONSE and 200 <= stream.status[i] < 300
            errors += 0 if ok else 1
            if stream.outcome[i] == RESPONSE:
                lat.append(stream.done[i] - at)
    n = len(lat) + sum(1 for i, at in enumerate(stream.sched) if lo <= at < hi and stream.outcome[i] != RESPONSE)
    return percentile(lat, 0.5), (errors / n if n else 0.0), n


def recovery_time(stream: Stream, start: float, end: float, base_p50: float,
                  base_err: float) -> tuple[float, list[Any]]:
    """Seconds after `start` from which every 100 ms window until `end` is back to the baseline."""
    windows: list[Any] = []
    t = start
    while t + WINDOW <= end + 1e-9:
        p50, err, n = window_stats(stream, t, t + WINDOW)
        normal = n > 0 and p50 <= 1.5 * base_p50 + 0.002 and err <= base_err + 0.01
        windows.append((round(t - start, 2), round(1000 * p50, 2), round(err, 4), n, normal))
        t += WINDOW
    recovered_at = 0.0
    for offset, _p50, _err, _n, normal in windows:
        if not normal:
            recovered_at = offset + WINDOW
    return recovered_at, windows


def lag_buckets(text: str) -> list[tuple[float, float]]:
    """The proxy's loop-lag histogram: (upper bound, cumulative count)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: list[tuple[float, float]] = []
    for family in text_string_to_metric_families(text):
        if family.name == "meshbatch_event_loop_lag_seconds":
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    out.append((float(sample.labels["le"]), sample.value))
    return out


def lag_summary(before: list[tuple[float, float]], after: list[tuple[float, float]]) -> dict[str, Any]:
    """The loop-lag samples taken between two scrapes: how many, and the bucket their 50th/99th percentile is in."""
    delta = [(bound, a - b) for (bound, a), (_, b) in zip(after, before, strict=True)]
    total = delta[-1][1] if delta else 0
    out: dict[str, Any] = {"samples": int(total)}
    for q in (0.5, 0.99):
        bound = next((b for b, n in delta if n >= q * total), float("inf")) if total else 0.0
        out[f"p{round(q * 100)}_ms_at_most"] = 1000 * bound
    out["over_5ms"] = int(total - next((n for b, n in delta if b >= 0.005), 0)) if total else 0
    return out


def overload(ctx: Context) -> ScenarioResult:
    result = ScenarioResult("overload", SCENARIOS[0].title)
    work = ctx.dir("overload")
    fleet = IdFleet(work).start("a", "b", "c")
    try:
        route = batched_route("overload", batch=BATCH, retry=None, per_try_timeout_ms=None)
        route = {k: v for k, v in route.items() if v is not None}
        proxy = Proxy(work / "proxy.yaml", standard(fleet.addresses(), routes=[route]))
        try:
            fleet.control(delay_ms=UPSTREAM_MS)
            floor = proxy.floor()
            cap_s, base_s, rec_s = ctx.seconds(3, 10), ctx.seconds(2, 5), ctx.seconds(3, 5)
            over_s = ctx.overload_seconds
            ctx.status(f"capacity: closed loop for {cap_s:g} s")
            closed = LoadGen(proxy.address(), [StreamSpec("capacity", "overload", "/overload", "C", connections=128,
                                                          rate=None, id_field="item.id")])
            ctx.live(closed)
            _run(closed, cap_s)
            cap_stream = closed.streams["capacity"]
            t0 = closed.started_at
            capacity = goodput(cap_stream, t0 + 0.5, t0 + cap_s)
            result.figures["capacity_items_per_s"] = round(capacity)
            low, high = 0.25 * capacity, 2.0 * capacity
            ctx.status(f"baseline {low:.0f}/s, overload {high:.0f}/s for {over_s:g} s, then back to {low:.0f}/s")
            spec = StreamSpec("overload", "overload", "/overload", "O", connections=512, rate=low, id_field="item.id",
                              phases=((base_s, low), (over_s, high), (rec_s, low)))
            load = LoadGen(proxy.address(), [spec])
            ctx.live(load)
            lag_before = lag_buckets(proxy.metrics())
            _run(load, base_s + over_s + rec_s)
            lag_after = lag_buckets(proxy.metrics())
            ctx.live(None)
            stream = load.streams["overload"]
            start = load.started_at
            over_lo, over_hi = start + base_s, start + base_s + over_s
            base_p50, base_err, base_n = window_stats(stream, start + 0.5, over_lo)
            good = goodput(stream, over_lo + 1.0, over_hi)  # the first second: the queue fills
            # Service time of each 429: the kernel's receive stamp of its first byte minus the write of the request
            # (free of the load generator's own scheduling); `observed`: as the load generator's loop saw it.
            rejected = [stream.service[i] for i, o in enumerate(stream.outcome)
                        if o == RESPONSE and stream.status[i] == 429]
            observed = [stream.done[i] - stream.sent[i] for i, o in enumerate(stream.outcome)
                        if o == RESPONSE and stream.status[i] == 429]
            rejected_sched = stream.latencies(over_lo, over_hi, status=lambda s: s == 429)
            offered = sum(1 for at in stream.sched if over_lo <= at < over_hi) / over_s
            recovered, windows = recovery_time(stream, over_hi, over_hi + rec_s, base_p50, base_err)
            text = proxy.metrics()
            proxy_429 = int(metric_value(text, "meshbatch_batch_rejections_total", route="overload",
                                         reason="queue_full"))
            failures = stream.failures()
            other = {k: v for k, v in failures.items() if k != "429 queue_full"}
            result.figures.update({
                "baseline": {"rate": round(low), "p50_ms": round(1000 * base_p50, 2), "error_share": base_err,
                             "requests": base_n},
                "overload": {"offered_per_s": round(offered), "goodput_per_s": round(good),
                             "goodput_x_capacity": round(good / capacity, 3) if capacity else None,
                             "rejected_429": len(rejected), "proxy_counted_429": proxy_429,
                             "429_p50_ms": round(1000 * percentile(rejected, 0.5), 2),
                             "429_p99_ms": round(1000 * percentile(rejected, 0.99), 2),
                             "429_max_ms": round(1000 * max(rejected, default=0.0), 2),
                             "429_p99_observed_by_the_client_loop_ms": round(1000 * percentile(observed, 0.99), 2),
                             "429_p99_from_schedule_ms": round(1000 * percentile(rejected_sched, 0.99), 2),
                             "accepted_p99_ms": round(1000 * percentile(
                                 stream.latencies(over_lo, over_hi, status=lambda s: 200 <= s < 300), 0.99), 2)},
                "recovery_s": round(recovered, 2),
                "proxy_loop_lag": lag_summary(lag_before, lag_after),
                "load_generator_lag_p99_ms": round(1000 * percentile(load.lag_samples, 0.99), 2),
                "recovery_windows": [w[:4] for w in windows[:12]],
            })
            result.check("goodput under 2x overload >= 90% of capacity", capacity > 0 and good >= 0.9 * capacity,
                         f"{good:.0f}/s against a capacity of {capacity:.0f}/s ({good / max(capacity, 1):.1%}), "
                         f"offered {offered:.0f}/s")
            result.check(f"refusals are fast 429s ({FAST_BAR_SHORT if ctx.short else FAST_BAR})",
                         bool(rejected) and _fast(rejected, ctx.short),
                         f"{len(rejected)} x 429, p50 {1000 * percentile(rejected, 0.5):.2f} ms, "
                         f"p95 {1000 * percentile(rejected, 0.95):.2f} ms, "
                         f"p99 {1000 * percentile(rejected, 0.99):.2f} ms from the request's write to the kernel's "
                         f"receipt of the answer")
            result.check("nothing fails but 429 queue_full", not other, f"other failures: {other}")
            result.check("the proxy counts every 429", proxy_429 == len(rejected),
                         f"proxy {proxy_429}, callers {len(rejected)}")
            result.check("recovers within 1 s", recovered <= 1.0,
                         f"p50 and errors back to baseline {recovered:.2f} s after the load dropped "
                         f"(baseline p50 {1000 * base_p50:.2f} ms, errors {base_err:.2%})")
            fleet.control(delay_ms=0)
            leak_checks(result, proxy, floor)
            both = {**closed.streams, **load.streams}
            merged = LoadGen(proxy.address(), [])
            merged.streams = both
            merged.lag_max = max(closed.lag_max, load.lag_max)
            answered = int(metric_value(text, "meshbatch_requests_total", route="overload"))
            account(result, merged, Sides(upstream_ids=fleet.id_counts(), proxy_answered={"overload": answered},
                                          retries={"overload": 0}), Bars(min_success=0.0))
        finally:
            proxy.terminate()
    finally:
        fleet.close()
    return result


SCENARIOS = [Scenario("overload", "Overload: 2x capacity on a batching route with a bounded queue", 100, overload)]
