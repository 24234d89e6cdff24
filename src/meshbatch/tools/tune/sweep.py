"""Replay a trace against a grid of settings and pick the one to recommend for a p99 target.

For each candidate (max_items, hold, max_in_flight) the simulation gives the latency distribution, batch sizes and
upstream busy time at the recorded load (optionally scaled: `load` 2 replays the arrivals twice as fast). Its
capacity, the most items per second it can carry, is max_in_flight * max_items / t(max_items).

The recommendation spends the latency budget on upstream efficiency: among the candidates whose simulated p99
meets the target with no caller expiring, the one that keeps the upstream least busy (the bigger batches a wait
buys), then the one with the most capacity (headroom for bursts), then the lowest p99. If none meets the target,
the one with the lowest p99 (and the report says so). Capacity beyond the largest recorded batch size rests on
the fitted cost line alone: the report marks it as extrapolated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from meshbatch.tools.tune.sim import CostModel, SimPolicy, percentile, simulate
from meshbatch.tools.tune.trace import Trace

DEFAULT_ITEMS = (8, 16, 32, 64, 128, 256)
DEFAULT_WAITS_MS = (0.0, 0.5, 1.0, 2.0, 5.0, 10.0)


@dataclass(frozen=True, slots=True)
class Outcome:
    max_items: int
    wait_ms: float
    max_in_flight: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    mean_batch: float
    items_per_s: float  # answered per second over the replay
    calls_per_s: float  # upstream batch calls per second
    capacity: float  # items per second this setting can carry at most
    busy: float  # share of the upstream slots' time in use
    expired: int
    current: bool = False

    def meets(self, target_ms: float) -> bool:
        return self.p99_ms <= target_ms and self.expired == 0


def scaled(arrivals: Sequence[float], load: float) -> list[float]:
    """Arrivals replayed `load` times as fast (same first arrival)."""
    if load == 1.0 or not arrivals:
        return list(arrivals)
    start = arrivals[0]
    return [start + (a - start) / load for a in arrivals]


def evaluate(arrivals: Sequence[float], policy: SimPolicy, cost: CostModel, *, tick: float, seed: int,
             current: bool = False) -> Outcome:
    result = simulate(arrivals, policy, cost, tick=tick, seed=seed)
    span, batches = result.span, len(result.sizes)
    return Outcome(
        max_items=policy.max_items, wait_ms=round(policy.hold * 1000, 3), max_in_flight=policy.max_in_flight,
        p50_ms=percentile(result.latencies, 0.5) * 1000, p99_ms=percentile(result.latencies, 0.99) * 1000,
        max_ms=max(result.latencies, default=0.0) * 1000,
        mean_batch=sum(result.sizes) / batches if batches else 0.0,
        items_per_s=len(result.latencies) / span, calls_per_s=batches / span,
        capacity=policy.max_in_flight * policy.max_items / max(cost.expected(policy.max_items), 1e-9),
        busy=result.busy / (span * policy.max_in_flight), expired=result.expired, current=current)


def sweep(trace: Trace, cost: CostModel, *, items: Sequence[int], waits_ms: Sequence[float],
          in_flight: Sequence[int], load: float = 1.0, tick: float = 1e-4, seed: int = 1) -> list[Outcome]:
    arrivals = scaled(trace.arrivals, load)
    policy = trace.policy
    timeout = float(policy.get("timeout_ms", 0)) / 1000 or float("inf")
    now = (int(policy.get("max_items", 0)), float(policy.get("min_wait_ms", 0.0)), int(policy.get("max_in_flight", 0)))
    out: list[Outcome] = []
    for slots in sorted(set(in_flight)):
        for size in sorted(set(items)):
            for wait in sorted(set(waits_ms)):
                chosen = SimPolicy(size, wait / 1000, slots, timeout)
                out.append(evaluate(arrivals, chosen, cost, tick=tick, seed=seed,
                                    current=(size, wait, slots) == now))
    return out


def grid(policy: dict[str, Any], items: Sequence[int] = (), waits_ms: Sequence[float] = (),
         in_flight: Sequence[int] = ()) -> tuple[list[int], list[float], list[int]]:
    """The settings to replay: the given values, else the defaults with the route's own (`policy`) added; the
    route's own slots when none are given."""
    sizes = list(items or DEFAULT_ITEMS)
    waits = list(waits_ms or DEFAULT_WAITS_MS)
    slots = list(in_flight or [int(policy.get("max_in_flight") or 4)])
    if not items and policy.get("max_items"):
        sizes.append(int(policy["max_items"]))
    if not waits_ms and "min_wait_ms" in policy:
        waits.append(float(policy["min_wait_ms"]))
    return sizes, waits, slots


def as_setting(best: Outcome, policy: dict[str, Any]) -> dict[str, float]:
    """An outcome as the route's keys: its hold is `min_wait_ms`, and `max_wait_ms` is kept at least as long."""
    return {"max_items": best.max_items, "min_wait_ms": best.wait_ms,
            "max_wait_ms": max(best.wait_ms, float(policy.get("max_wait_ms") or 0.0)),
            "max_in_flight": best.max_in_flight}


def recommend(outcomes: Sequence[Outcome], target_ms: float) -> tuple[Outcome, bool]:
    """The setting to recommend, and whether it meets the target."""
    if not outcomes:
        raise ValueError("no candidates")
    meeting = [o for o in outcomes if o.meets(target_ms)]
    if meeting:
        best = max(meeting, key=lambda o: (-round(o.busy, 2), round(o.capacity, 6), -o.p99_ms))
        return best, True
    return min(outcomes, key=lambda o: (o.expired, o.p99_ms)), False


__all__ = ["DEFAULT_ITEMS", "DEFAULT_WAITS_MS", "Outcome", "as_setting", "evaluate", "grid", "recommend", "scaled",
           "sweep"]
