"""One upstream endpoint: its address, weight, metadata, pool, live counters, health and load estimate.

After each exchange the caller reports the outcome with one method call, `observe(status, start, end)`, where
`status` is the answer's status or the 5xx an error maps to (see `outcome.py`). That call keeps:
- a peak-EWMA of the round trip (latency jumps up at once and decays over `decay` seconds), read by the `ewma`
  balancer and shown in /clusters;
- a failure penalty (5xx, 429 and errors), so that an endpoint that fails fast does not look attractive;
- the counters of passive outlier detection (consecutive 5xx and gateway failures, the interval's volume).

Availability is a bit set, `down`: each mechanism that takes an endpoint out of balancing owns one bit
(active health checks, outlier ejection; others may add theirs). Balancers read `available` tuples that the
cluster's `EndpointSet` recomputes only when a bit flips.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from math import exp

from meshbatch.http.pool import EndpointPool, PoolLimits

FAILED_ACTIVE_CHECK = 1
EJECTED = 2
DOWN_NAMES = {FAILED_ACTIVE_CHECK: "failed_active_health_check", EJECTED: "outlier_ejected"}
GATEWAY_FAILURES = frozenset({502, 503, 504})
NEVER = 1 << 62

Trip = Callable[["Endpoint", float], None]


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class Endpoint:
    __slots__ = (
        "active",
        "address",
        "consecutive_5xx",
        "consecutive_gateway",
        "decay",
        "down",
        "ejected_until",
        "ejection_level",
        "ejections",
        "errors",
        "gateway_limit",
        "host",
        "limit_5xx",
        "metadata",
        "owner",
        "penalty",
        "penalty_at",
        "penalty_decay",
        "penalty_value",
        "pool",
        "port",
        "requests",
        "rtt",
        "rtt_at",
        "trip",
        "watchers",
        "weight",
        "window_failed",
        "window_total",
    )

    def __init__(self, address: str, weight: int, metadata: dict[str, str], limits: PoolLimits,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.address = address
        self.host, self.port = split_address(address)
        self.weight = weight
        self.metadata = dict(metadata)
        self.pool = EndpointPool(self.host, self.port, limits, loop)
        self.owner: object = None  # the cluster whose close() closes this pool
        self.watchers: list[Callable[[], None]] = []  # told when `available` flips
        self.active = 0  # requests in flight
        self.requests = 0
        self.errors = 0
        self.down = 0
        # load estimate (seconds; `*_at` are times of the last update on the loop's clock, 0 = never)
        self.rtt = 0.030
        self.rtt_at = 0.0
        self.decay = 10.0
        self.penalty = 0.0
        self.penalty_at = 0.0
        self.penalty_value = 1.0
        self.penalty_decay = 2.0
        # passive health
        self.consecutive_5xx = 0
        self.consecutive_gateway = 0
        self.limit_5xx = NEVER
        self.gateway_limit = NEVER
        self.trip: Trip | None = None
        self.window_total = 0
        self.window_failed = 0
        self.ejections = 0
        self.ejection_level = 0
        self.ejected_until = 0.0

    # the outcome of one exchange (hot path) --------------------------------------------------------
    def observe(self, status: int, rtt: float, end: float) -> None:
        """An answer (or a failure with a status) after `rtt` seconds (a perf_counter duration), at `end` (the
        loop's clock, as every time point: clock.py)."""
        estimate = self.rtt
        if rtt >= estimate or not self.rtt_at:  # slower (a peak), or the first answer
            self.rtt = rtt
        else:
            w = exp((self.rtt_at - end) / self.decay)
            self.rtt = estimate * w + rtt * (1.0 - w)
        self.rtt_at = end
        self.window_total += 1
        if status < 429 or 429 < status < 500:
            self.consecutive_5xx = 0
            self.consecutive_gateway = 0
            return
        self._failed(status, end)

    def _failed(self, status: int, end: float) -> None:
        self.penalty = self.penalty_value
        self.penalty_at = end
        if status == 429:  # overloaded, not broken: a penalty for the balancer, no outlier accounting
            self.consecutive_5xx = 0
            self.consecutive_gateway = 0
            return
        self.window_failed += 1
        self.consecutive_5xx += 1
        if status in GATEWAY_FAILURES:
            self.consecutive_gateway += 1
        else:
            self.consecutive_gateway = 0
        if self.trip is not None and (self.consecutive_5xx >= self.limit_5xx
                                      or self.consecutive_gateway >= self.gateway_limit):
            self.trip(self, end)

    def cost(self, now: float) -> float:
        """Peak-EWMA load: the decayed latency estimate times (in flight + 1), at least the decayed penalty,
        divided by the weight. Lower is better."""
        rtt_at = self.rtt_at
        rtt = self.rtt * exp((rtt_at - now) / self.decay) if rtt_at else self.rtt
        load = rtt * (self.active + 1)
        if self.penalty:
            penalty = self.penalty * exp((self.penalty_at - now) / self.penalty_decay)
            if penalty > load:
                load = penalty
        return load / self.weight

    # availability ----------------------------------------------------------------------------------
    @property
    def available(self) -> bool:
        return not self.down

    @property
    def healthy(self) -> bool:
        return not self.down

    def set_down(self, bit: int, down: bool) -> None:
        before = self.down
        self.down = before | bit if down else before & ~bit
        if (before == 0) != (self.down == 0):
            for watcher in self.watchers:
                watcher()

    def state(self) -> str:
        if not self.down:
            return "healthy"
        return "ejected" if self.down == EJECTED else "unhealthy"

    def summary(self, now: float) -> dict[str, object]:
        pool = self.pool
        return {
            "address": self.address,
            "weight": self.weight,
            "metadata": self.metadata,
            "health": self.state(),
            "health_flags": [name for bit, name in DOWN_NAMES.items() if self.down & bit],
            "active_requests": self.active,
            "requests": self.requests,
            "errors": self.errors,
            "latency_ewma_ms": round(self.rtt * 1000, 3),
            "penalty_ms": round(self.penalty * exp((self.penalty_at - now) / self.penalty_decay) * 1000, 3)
            if self.penalty else 0.0,
            "ejections": self.ejections,
            "ejected_for_ms": round(max(0.0, self.ejected_until - now) * 1000) if self.down & EJECTED else 0,
            "consecutive_5xx": self.consecutive_5xx,
            "connections": {"open": pool.opened, "idle": pool.idle, "pending": pool.pending,
                            "connects": pool.connects, "connect_failures": pool.connect_failures},
        }

    def __repr__(self) -> str:
        return f"<Endpoint {self.address} {self.state()} active={self.active} {self.pool!r}>"


__all__ = ["EJECTED", "FAILED_ACTIVE_CHECK", "GATEWAY_FAILURES", "Endpoint", "Trip", "split_address"]
