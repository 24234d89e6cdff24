"""What the route stacks of one snapshot share: the clusters, the loop and metrics, the state carried across
reloads (guards, rate limit buckets, concurrency controllers: `layers.shared.Shared`), and the pieces several
kinds of route build the same way (where a route sends, its mirror, its retry policy, its checks, its layers in
front). Built next to the snapshot; `activate()` once the snapshot serves.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from meshbatch.config import plain
from meshbatch.layers.authz import PolicyCheck
from meshbatch.layers.concurrency import ConcurrencyLayer
from meshbatch.layers.fault import FaultLayer, FaultPlan
from meshbatch.layers.metrics import LayerMetrics
from meshbatch.layers.mirror import Mirror
from meshbatch.layers.ratelimit import RateLimitCheck, RateLimits
from meshbatch.layers.retry import RetryPolicy
from meshbatch.layers.shared import Shared
from meshbatch.layers.split import Split
from meshbatch.runtime.security import Security
from meshbatch.security.policy import Authorizer
from meshbatch.service import Check, Service
from meshbatch.telemetry.metrics import Registry
from meshbatch.upstream.cluster import Cluster
from meshbatch.upstream.target import Target


def route_clusters(route: plain.Route) -> list[str]:
    """Every cluster a route sends to: its cluster or split clusters, and its mirror's."""
    if not isinstance(route, plain.ForwardingRoute):  # an ingest route: its cluster, if it delivers to one
        return [route.cluster] if route.cluster else []
    names = [w.cluster for w in route.split] if route.split else [route.cluster] if route.cluster else []
    if route.mirror is not None:
        names.append(route.mirror.cluster)
    return names


def guarded(route: plain.Route, clusters: dict[str, Cluster]) -> bool:
    """The route's upstream exchanges go through its clusters' guards (thresholds, endpoint breakers, the retry
    budget): it retries, splits, mirrors, has per-try timeouts, or a cluster it sends to has circuit breakers."""
    if isinstance(route, plain.ForwardingRoute) and (route.retry or route.per_try_timeout_ms or route.split
                                                     or route.subset or route.mirror):
        return True
    cluster = clusters.get(route.cluster)
    return cluster is not None and cluster.config.circuit_breakers is not None


@dataclass(slots=True)
class Parts:
    clusters: dict[str, Cluster]
    loop: asyncio.AbstractEventLoop
    registry: Registry
    metrics: LayerMetrics
    shared: Shared
    security: Security | None

    @classmethod
    def of(cls, clusters: dict[str, Cluster], loop: asyncio.AbstractEventLoop, registry: Registry,
           previous: Shared | None, security: Security | None) -> Parts:
        metrics = LayerMetrics.of(registry)
        return cls(clusters, loop, registry, metrics, Shared(metrics, previous), security)

    # where a route sends ---------------------------------------------------------------------------
    def target(self, route: plain.Route, name: str, subset: dict[str, str] | None = None) -> Target:
        cluster = self.clusters[name]
        guard = self.shared.guard(cluster.config) if guarded(route, self.clusters) else None
        fallback = isinstance(route, plain.ForwardingRoute) and route.subset_fallback == "any"
        return Target(cluster, guard, subset, fallback)

    def split(self, route: plain.Route) -> Split:
        """The route's targets by weight (one target when it does not split; an ingest route's: its cluster)."""
        if not isinstance(route, plain.ForwardingRoute):
            return Split([(self.target(route, route.cluster), 1)], None)
        header = route.split_key.partition(":")[2].lower().encode() if route.split_key else None
        if route.split:
            return Split([(self.target(route, w.cluster, w.subset), w.weight) for w in route.split], header)
        return Split([(self.target(route, route.cluster, route.subset), 1)], header)

    def mirror(self, route: plain.Route) -> Mirror | None:
        spec = route.mirror if isinstance(route, plain.ForwardingRoute) else None
        if spec is None:
            return None
        timeout = (spec.timeout_ms or route.timeout_ms) / 1000
        return Mirror(route.name, self.clusters[spec.cluster], spec.percent, spec.max_in_flight, timeout, self.loop,
                      self.metrics)

    def retry_policy(self, route: plain.ForwardingRoute) -> RetryPolicy | None:
        return RetryPolicy(route.name, route.retry, self.metrics) if route.retry is not None else None

    def per_try_timeout(self, route: plain.Route) -> float | None:
        """Seconds one upstream attempt may take (None: the route's whole timeout)."""
        per_try = route.per_try_timeout_ms if isinstance(route, plain.ForwardingRoute) else None
        return per_try / 1000 if per_try else None

    # checks: answered by the proxy itself, before anything awaits ------------------------------------
    def policies(self, listener: plain.Listener, route: plain.Route) -> list[Check]:
        """The route's own authorization policies (after the listener's: both must allow)."""
        if not route.policies or self.security is None:
            return []
        return [PolicyCheck(Authorizer(route.policies), self.security.stats, listener.name, route.name)]

    def rate_limits(self, route: plain.Route, unit: str) -> RateLimits | None:
        """The route's limits counted in `unit` (requests or items; a plain route's, all of them)."""
        counts_items = isinstance(route, plain.BatchRoute)  # elsewhere a request is the only unit
        configs = [c for c in route.rate_limit if c.unit == unit or not counts_items]
        if not configs:
            return None
        name = route.name if unit == "requests" else f"{route.name}#{unit}"
        return RateLimits(self.shared.route_limits(name, configs), route.name, self.loop, self.metrics)

    def request_limits(self, route: plain.Route) -> list[Check]:
        limits = self.rate_limits(route, "requests")
        return [RateLimitCheck(limits)] if limits is not None else []

    # layers in front of a route's service -------------------------------------------------------------
    def front(self, route: plain.Route, service: Service) -> Service:
        """Adaptive concurrency, then (outermost) injected faults."""
        if route.adaptive_concurrency is not None:
            controller = self.shared.controller(route.name, route.adaptive_concurrency, self.loop.time())
            service = ConcurrencyLayer(service, controller, route.name, self.loop, self.metrics)
        if route.fault is not None:
            service = FaultLayer(service, FaultPlan(route.fault), route.name, route.timeout_ms / 1000, self.loop,
                                 self.metrics)
        return service

    def activate(self) -> None:
        self.shared.activate()


__all__ = ["Parts", "guarded", "route_clusters"]
