"""A discrete-event simulation of one batching route: sans-I/O, deterministic, the batcher's own rules.

Input: item arrival times (seconds, sorted), a policy (size cap, hold, in-flight slots, caller timeout) and an
upstream cost model t(n) = fixed + per_item * n + a residual drawn (seeded) from the measured residuals.
The rules are the dispatcher's (see `meshbatch.batching.accumulator`):
- while a slot is free, a queue is ready when it holds `max_items` items, or when its oldest item has waited the
  hold; with no hold, at the end of the event-loop tick (`tick`: arrivals that close together share a batch);
- a free slot takes up to `max_items` items, oldest first; while every slot is busy the queue grows;
- an item that can no longer finish before its deadline (arrival + timeout) with a batch of one is answered 504
  instead of being sent (counted as expired);
- a finished batch frees its slot and the next ready batch goes at once.
One queue (batch keys are not modelled) and one upstream whose time depends only on the batch size.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

INF = float("inf")


@dataclass(frozen=True, slots=True)
class SimPolicy:
    max_items: int
    hold: float  # seconds a queue is held before a free slot takes it (min_wait_ms)
    max_in_flight: int
    timeout: float = INF  # the caller's budget (the route's timeout_ms)

    def __post_init__(self) -> None:
        if self.max_items < 1 or self.max_in_flight < 1 or self.hold < 0:
            raise ValueError(f"invalid policy {self}")


@dataclass(frozen=True, slots=True)
class CostModel:
    """Upstream seconds for a batch of n items: fixed + per_item * n + a measured residual."""

    fixed: float
    per_item: float
    residuals: tuple[float, ...] = ()

    def expected(self, n: int) -> float:
        return self.fixed + self.per_item * n

    def sampler(self, seed: int) -> Sampler:
        return Sampler(self, random.Random(seed))


class Sampler:
    __slots__ = ("model", "rng")

    def __init__(self, model: CostModel, rng: random.Random) -> None:
        self.model = model
        self.rng = rng

    def __call__(self, n: int) -> float:
        residuals = self.model.residuals
        noise = residuals[self.rng.randrange(len(residuals))] if residuals else 0.0
        return max(1e-6, self.model.expected(n) + noise)


@dataclass(slots=True)
class SimResult:
    latencies: list[float] = field(default_factory=list)  # per answered item: done - arrival
    sizes: list[int] = field(default_factory=list)  # per batch
    busy: float = 0.0  # upstream seconds summed over batches
    expired: int = 0
    start: float = 0.0
    end: float = 0.0

    @property
    def span(self) -> float:
        return max(self.end - self.start, 1e-9)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of unsorted values (0 for none)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def simulate(arrivals: Sequence[float], policy: SimPolicy, cost: CostModel, *, tick: float = 1e-4,
             seed: int = 1) -> SimResult:
    """Replay `arrivals` (sorted seconds) through the batcher with `policy`; deterministic for a seed."""
    service = cost.sampler(seed)
    result = SimResult(start=arrivals[0] if arrivals else 0.0)
    queue: deque[float] = deque()
    free = policy.max_in_flight
    cap, hold, timeout = policy.max_items, policy.hold, policy.timeout
    lead = cost.expected(1)
    events: list[tuple[float, int, int]] = []  # (time, order, kind): kind 1 = a batch done, 0 = look at the queue
    order = 0
    pending_look = INF  # the earliest "look" already scheduled
    i, n = 0, len(arrivals)
    latencies, sizes = result.latencies, result.sizes

    def flush(now: float) -> None:
        nonlocal free, order
        while free and queue:
            if len(queue) < cap and queue[0] + hold > now:
                return
            taken: list[float] = []
            while queue and len(taken) < cap:
                arrived = queue.popleft()
                if now + lead >= arrived + timeout:
                    result.expired += 1
                    continue
                taken.append(arrived)
            if not taken:
                continue
            seconds = service(len(taken))
            done = now + seconds
            result.busy += seconds
            sizes.append(len(taken))
            for arrived in taken:
                latencies.append(done - arrived)
            free -= 1
            order += 1
            heapq.heappush(events, (done, order, 1))
            result.end = max(result.end, done)

    def look_at(when: float) -> None:
        nonlocal order, pending_look
        if when < pending_look:
            pending_look = when
            order += 1
            heapq.heappush(events, (when, order, 0))

    while i < n or events:
        if i < n and (not events or arrivals[i] <= events[0][0]):
            now = arrivals[i]
            i += 1
            queue.append(now)
            if free:
                look_at(now if len(queue) >= cap else queue[0] + hold if hold > 0 else now + tick)
            continue
        now, _, kind = heapq.heappop(events)
        if kind == 1:
            free += 1
        elif now >= pending_look:
            pending_look = INF
        flush(now)
        if free and queue:
            look_at(max(now, queue[0] + hold) if len(queue) < cap else now)
    result.end = max(result.end, arrivals[-1] if arrivals else 0.0)
    return result


__all__ = ["CostModel", "SimPolicy", "SimResult", "percentile", "simulate"]
