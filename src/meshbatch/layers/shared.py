"""The state of the layers of one snapshot, carried over from the previous one where its config is the same.

Guards (per cluster: breakers, retry budget), rate limit buckets and concurrency controllers (per route) keep
their counts across a reload that does not change them, so a SIGHUP neither resets a rate limit nor closes
an open breaker. Guards that the new snapshot drops give back the endpoints they took out of balancing.
"""

from __future__ import annotations

from collections.abc import Iterator

from meshbatch.clock import LoopClock
from meshbatch.config import plain
from meshbatch.layers.concurrency import GradientController
from meshbatch.layers.metrics import LayerMetrics
from meshbatch.layers.ratelimit import Limit
from meshbatch.telemetry.metrics import Labels
from meshbatch.upstream.breaker import CLOSED
from meshbatch.upstream.guard import ClusterGuard

DEFAULT_BREAKERS = plain.CircuitBreakers()


class Shared:
    __slots__ = ("_previous", "controllers", "guards", "limits", "metrics")

    def __init__(self, metrics: LayerMetrics | None = None, previous: Shared | None = None) -> None:
        self.metrics = metrics
        self._previous = previous
        self.guards: dict[str, ClusterGuard] = {}
        self.limits: dict[str, list[Limit]] = {}
        self.controllers: dict[str, GradientController] = {}

    def guard(self, cluster: plain.Cluster) -> ClusterGuard:
        guard = self.guards.get(cluster.name)
        if guard is not None:
            return guard
        config = cluster.circuit_breakers or DEFAULT_BREAKERS
        old = self._previous.guards.get(cluster.name) if self._previous is not None else None
        guard = old if old is not None and old.config == config else ClusterGuard(cluster.name, config, self.metrics)
        self.guards[cluster.name] = guard
        return guard

    def route_limits(self, route: str, configs: list[plain.RateLimit]) -> list[Limit]:
        old = self._previous.limits.get(route) if self._previous is not None else None
        if old is not None and [limit.config for limit in old] == configs:
            limits = old
        else:
            limits = [Limit(config) for config in configs]
        self.limits[route] = limits
        return limits

    def controller(self, route: str, config: plain.AdaptiveConcurrency, now: float) -> GradientController:
        old = self._previous.controllers.get(route) if self._previous is not None else None
        controller = old if old is not None and old.config == config else GradientController(config, now)
        self.controllers[route] = controller
        return controller

    def activate(self) -> None:
        """This snapshot now serves: the gauges read it, and the previous one is forgotten."""
        if self.metrics is not None:
            self.metrics.state = self
        self._previous = None

    def release_unkept(self, new: Shared) -> None:
        """`new` replaced this snapshot's state: guards it does not keep give their endpoints back."""
        kept = {id(g) for g in new.guards.values()}
        for guard in self.guards.values():
            if id(guard) not in kept:
                guard.release()

    # gauges ----------------------------------------------------------------------------------------
    def breaker_states(self) -> Iterator[tuple[Labels, float]]:
        for name, guard in self.guards.items():
            for address, breaker in guard.breakers.items():
                yield (name, address), 0.0 if breaker.state == CLOSED else 1.0

    def budget_remaining(self) -> Iterator[tuple[Labels, float]]:
        now = LoopClock().now()  # the budget's window is on the loop's clock (clock.py)
        for name, guard in self.guards.items():
            if guard.budget is not None:
                yield (name,), float(guard.budget.available(now, guard.active))

    def concurrency_limits(self) -> Iterator[tuple[Labels, float]]:
        for route, controller in self.controllers.items():
            yield (route,), float(int(controller.limit))

    def min_rtts(self) -> Iterator[tuple[Labels, float]]:
        for route, controller in self.controllers.items():
            yield (route,), controller.min_rtt


__all__ = ["DEFAULT_BREAKERS", "Shared"]
