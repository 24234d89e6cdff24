"""Peak-EWMA (as Linkerd and Finagle do): of `choice_count` random available endpoints (all of them, each once,
when `choice_count` >= their number), the one with the lowest cost, where cost = latency estimate x (requests
in flight + 1), at least the failure penalty, / weight.

The latency estimate jumps to a slower round trip at once and decays towards faster ones over `decay_ms`; an
idle endpoint's estimate decays towards zero, so a once-slow endpoint is probed again now and then. A 5xx, a
429 or a failed exchange sets a penalty of `failure_penalty_ms` that fades over `failure_penalty_decay_ms`:
an endpoint that fails in a millisecond does not look like the fastest one.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from meshbatch.clock import LoopClock
from meshbatch.config.plain import LbConfig
from meshbatch.upstream.balancers.base import BALANCERS
from meshbatch.upstream.endpoint import Endpoint
from meshbatch.upstream.endpoint_set import EndpointSet


class PeakEwma:
    __slots__ = ("_choices", "_endpoints", "_now", "_random")

    def __init__(self, endpoints: EndpointSet, config: LbConfig | None = None,
                 rng: random.Random | None = None, now: Callable[[], float] | None = None) -> None:
        self._endpoints = endpoints
        self._choices = config.choice_count if config is not None else 2
        self._random = (rng or random.Random()).random
        self._now = now or LoopClock().now  # the clock of the endpoints' time points (clock.py)

    def pick(self, key: bytes | None = None) -> Endpoint | None:
        live = self._endpoints.available
        n = len(live)
        if n <= 1:
            return live[0] if n else None
        now = self._now()
        rand = self._random
        if self._choices >= n:  # asked to compare at least as many as there are: each once, from a random start
            start = int(rand() * n)
            best, best_cost = live[start], live[start].cost(now)
            for i in range(1, n):
                endpoint = live[(start + i) % n]
                cost = endpoint.cost(now)
                if cost < best_cost:
                    best, best_cost = endpoint, cost
            return best
        a = live[int(rand() * n)]
        cost_a = a.cost(now)
        for _ in range(min(self._choices, n) - 1):
            b = live[int(rand() * n)]
            while b is a:
                b = live[int(rand() * n)]
            cost_b = b.cost(now)
            if cost_b < cost_a:
                a, cost_a = b, cost_b
        return a


BALANCERS.register("ewma")(PeakEwma)
BALANCERS.register("peak_ewma")(PeakEwma)

__all__ = ["PeakEwma"]
