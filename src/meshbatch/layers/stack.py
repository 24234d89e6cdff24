"""Composing a route's layers, once per snapshot (never per request).

A plain route with none of these policies keeps the Forwarder and its callback fast path. One with any of
them (or whose cluster sets `circuit_breakers`) is served by this stack, outermost first:

    deadline -> fault -> rate limit -> adaptive concurrency -> mirror -> split -> retry -> upstream call

A batching route keeps its batcher; the route-level layers wrap it (fault, rate limit in requests, adaptive
concurrency; then, closest to the batcher, rate limit in items), and its batches go through a guarded sender
(split per batch, per-try timeout, breakers, mirror) with item-level retries in the batcher.
"""

from __future__ import annotations

import asyncio

from meshbatch.config import model
from meshbatch.http.message import Handler
from meshbatch.layers.call import GuardedSender, UpstreamCall
from meshbatch.layers.concurrency import ConcurrencyLayer
from meshbatch.layers.fault import FaultLayer, FaultPlan
from meshbatch.layers.metrics import LayerMetrics
from meshbatch.layers.mirror import Mirror, MirrorLayer
from meshbatch.layers.ratelimit import RateLimitLayer
from meshbatch.layers.retry import RetryLayer, RetryPolicy
from meshbatch.layers.shared import Shared
from meshbatch.layers.split import Split, SplitLayer, Target
from meshbatch.layers.timeout import DeadlineLayer
from meshbatch.telemetry.metrics import Registry
from meshbatch.upstream.cluster import Cluster


def route_clusters(route: model.Route) -> list[str]:
    """Every cluster a route sends to: its cluster or split clusters, and its mirror's."""
    names = [w.cluster for w in route.split] if route.split else [route.cluster] if route.cluster else []
    if route.mirror is not None:
        names.append(route.mirror.cluster)
    return names


def _front(route: model.Route) -> bool:
    return bool(route.fault or route.adaptive_concurrency or route.rate_limit)


def _guarded(route: model.Route, clusters: dict[str, Cluster]) -> bool:
    """The route's upstream calls go through guards (a plain route: the stack instead of the Forwarder)."""
    if route.retry or route.per_try_timeout_ms or route.split or route.subset or route.mirror:
        return True
    cluster = clusters.get(route.cluster)
    return cluster is not None and cluster.config.circuit_breakers is not None


class Layers:
    """The layers of one snapshot: build it next to the snapshot, `activate()` it when the snapshot serves."""

    def __init__(self, clusters: dict[str, Cluster], loop: asyncio.AbstractEventLoop, registry: Registry,
                 previous: Shared | None = None) -> None:
        self.clusters = clusters
        self.loop = loop
        self.metrics = LayerMetrics.of(registry)
        self.shared = Shared(self.metrics, previous)

    # pieces ----------------------------------------------------------------------------------------
    def _target(self, name: str, subset: dict[str, str], fallback: bool) -> Target:
        cluster = self.clusters[name]
        return Target(cluster, self.shared.guard(cluster.config), subset, fallback)

    def _split(self, route: model.Route) -> Split:
        fallback = route.subset_fallback == "any"
        header = route.split_key.partition(":")[2].lower().encode() if route.split_key else None
        if route.split:
            return Split([(self._target(w.cluster, w.subset, fallback), w.weight) for w in route.split], header)
        return Split([(self._target(route.cluster, route.subset, fallback), 1)], header)

    def _mirror(self, route: model.Route) -> Mirror | None:
        spec = route.mirror
        if spec is None:
            return None
        timeout = (spec.timeout_ms or route.timeout_ms) / 1000
        return Mirror(route.name, self.clusters[spec.cluster], spec.percent, spec.max_in_flight, timeout, self.loop,
                      self.metrics)

    def retry_policy(self, route: model.Route) -> RetryPolicy | None:
        return RetryPolicy(route.name, route.retry, self.metrics) if route.retry is not None else None

    def _front_layers(self, route: model.Route, handler: Handler, unit: str) -> Handler:
        timeout = route.timeout_ms / 1000
        limits = [c for c in route.rate_limit if c.unit == unit or route.batch is None]
        if limits:
            handler = RateLimitLayer(handler, self.shared.route_limits(route.name, limits), route.name, self.loop,
                                     self.metrics)
        if route.adaptive_concurrency is not None:
            controller = self.shared.controller(route.name, route.adaptive_concurrency, self.loop.time())
            handler = ConcurrencyLayer(handler, controller, route.name, self.loop, self.metrics)
        if route.fault is not None:
            handler = FaultLayer(handler, FaultPlan(route.fault), route.name, timeout, self.loop, self.metrics)
        return handler

    # what the snapshot asks for --------------------------------------------------------------------
    def plain(self, route: model.Route, listener: model.Listener) -> Handler | None:
        """The handler of a plain route with policies, or None: keep the Forwarder and its fast path."""
        guarded = _guarded(route, self.clusters)
        if not guarded and not _front(route):
            return None
        timeout = route.timeout_ms / 1000
        per_try = route.per_try_timeout_ms / 1000 if route.per_try_timeout_ms else None
        split = self._split(route)
        handler: Handler = UpstreamCall(split.targets[0], timeout, per_try, listener.via, self.loop,
                                        listener.limits.max_buffer_bytes)
        policy = self.retry_policy(route)
        if policy is not None:
            handler = RetryLayer(handler, policy, split.targets[0], timeout, self.loop)
        if len(split.targets) > 1:
            handler = SplitLayer(handler, split, route.name, self.metrics)
        mirror = self._mirror(route)
        if mirror is not None:
            handler = MirrorLayer(handler, mirror, listener.via)
        handler = self._front_layers(route, handler, "requests")
        return DeadlineLayer(handler, timeout, self.loop)

    def batch_sender(self, route: model.Route, listener: model.Listener) -> GuardedSender | None:
        """The sender of a batching route with policies, or None: keep the plain batch sender."""
        if not _guarded(route, self.clusters):
            return None
        per_try = route.per_try_timeout_ms / 1000 if route.per_try_timeout_ms else None
        return GuardedSender(route.name, self._split(route), per_try, listener.via, self.loop, self._mirror(route),
                             self.metrics)

    def batch_items(self, route: model.Route, batcher: Handler) -> Handler:
        """Around the batcher (inside any pipeline): the route's rate limits counted in items."""
        limits = [c for c in route.rate_limit if c.unit == "items"]
        if not limits:
            return batcher
        return RateLimitLayer(batcher, self.shared.route_limits(route.name + "#items", limits), route.name,
                              self.loop, self.metrics)

    def front(self, route: model.Route, handler: Handler) -> Handler:
        """Around a batching or ingest route's handler: fault, rate limit in requests, adaptive concurrency."""
        return self._front_layers(route, handler, "requests") if _front(route) else handler

    def activate(self) -> None:
        self.shared.activate()


__all__ = ["Layers", "route_clusters"]
