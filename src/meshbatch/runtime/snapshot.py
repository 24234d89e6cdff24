"""A snapshot: everything built from one config (clusters, route tables, batchers), swapped as one reference.

On reload a new snapshot is built next to the old one. Clusters and batchers whose config did not change
are carried over as they are (warm connections, queued items); the rest of the old snapshot retires: its
batchers drain, then its clusters close.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from meshbatch.config import model
from meshbatch.config.redact import redact_config
from meshbatch.errors import NoRoute
from meshbatch.http.message import Handler, Headers, Request, Response
from meshbatch.ingest.route import IngestRoute
from meshbatch.ingest.wiring import build_ingest, stop_ingest, with_pipeline, wrap_send
from meshbatch.layers import Layers, Shared, route_clusters
from meshbatch.proxy.fast import Exchange, Respond
from meshbatch.proxy.forward import VIA, Forwarder
from meshbatch.routing.match import RouteMatcher, RouteTable
from meshbatch.telemetry.metrics import Registry
from meshbatch.upstream.cluster import Cluster

if TYPE_CHECKING:
    from meshbatch.batching.handler import BatchHandler
    from meshbatch.security.wiring import Security


@dataclass(frozen=True, slots=True)
class RouteEntry:
    name: str
    handler: Handler
    config: model.Route
    start: Callable[[Request, Respond], Exchange | None] | None = None


class Router:
    """A listener's handler: first matching route, or 404."""

    __slots__ = ("listener", "table")

    def __init__(self, listener: str, table: RouteTable[RouteEntry]) -> None:
        self.listener = listener
        self.table = table

    async def __call__(self, request: Request) -> Response:
        entry = self.table.match(request)
        if entry is None:
            raise NoRoute("no_route", f"no route of listener {self.listener!r} matches this request")
        request.route = entry.name
        return await entry.handler(request)

    def start(self, request: Request, respond: Respond) -> Exchange | None:
        """The fast path: a plain route with an idle upstream connection; None means "await the handler"."""
        entry = self.table.match(request)
        if entry is None or entry.start is None:
            return None
        request.route = entry.name
        return entry.start(request, respond)


class BatchSender:
    """Sends one batch to the route's cluster (one endpoint per batch, chosen by the balancer)."""

    __slots__ = ("cluster", "loop", "via")

    def __init__(self, cluster: Cluster, loop: asyncio.AbstractEventLoop, via: bool) -> None:
        self.cluster = cluster
        self.loop = loop
        self.via = via

    async def __call__(self, method: bytes, path: bytes, headers: Headers, body: bytes, timeout: float,
                       key: tuple[bytes, ...]) -> Response:
        out = [(b"host", self.cluster.name.encode()), *headers]
        if self.via:
            out.append((b"via", VIA))
        hash_key = b"\x00".join(key) if key else None
        return await self.cluster.send(method, path, out, body, self.loop.time() + timeout, hash_key)


@dataclass(slots=True)
class Snapshot:
    config: model.Config
    clusters: dict[str, Cluster]
    routers: dict[str, Router]
    batchers: dict[str, BatchHandler]
    loaded_at: float = field(default_factory=time.time)
    version: int = 1
    ingest: dict[str, IngestRoute] = field(default_factory=dict)
    shared: Shared = field(default_factory=Shared)  # state of the resilience layers (meshbatch.layers)

    def dump(self) -> dict[str, Any]:
        """The config as /config_dump shows it: every secret redacted (meshbatch.config.redact)."""
        return {"version": self.version, "loaded_at": self.loaded_at, "config": redact_config(self.config)}


def build(config: model.Config, loop: asyncio.AbstractEventLoop, metrics: Registry,
          previous: Snapshot | None = None, security: Security | None = None) -> Snapshot:
    """Raises OSError (TlsSetupError) when identity or JWKS files named by the config cannot be loaded."""
    if security is not None:
        security.prepare(config)  # certificates and key sets load first: bad files reject the config
    old_clusters = previous.clusters if previous else {}
    clusters: dict[str, Cluster] = {}
    for spec in config.clusters:
        old = old_clusters.get(spec.name)
        clusters[spec.name] = old if old is not None and old.config == spec else \
            Cluster(spec, loop, old, tls=security.client_tls(spec) if security is not None else None)
    batchers: dict[str, BatchHandler] = {}
    ingest: dict[str, IngestRoute] = {}
    routers: dict[str, Router] = {}
    layers = Layers(clusters, loop, metrics, previous.shared if previous else None)
    for listener in config.listeners:
        entries = []
        for route in listener.routes:
            handler: Handler
            start = None
            if route.ingest is not None:  # accept durably (202), deliver later: meshbatch.ingest
                ingest[route.name] = _ingest(route, clusters, listener, loop, metrics, previous)
                handler = layers.front(route, ingest[route.name].handler)
                if security is not None:  # the route's own authorization policies
                    handler, _ = security.route(listener, route, handler, None)
                entries.append((RouteMatcher(route.match), RouteEntry(route.name, handler, route)))
                continue
            if route.batch is not None:
                handler = batchers[route.name] = _batcher(route, clusters, listener, loop, metrics, previous, layers)
                if security is not None:  # an item may not exceed the batch's byte cap (413)
                    handler = security.item_cap(route, handler)
                handler = layers.batch_items(route, handler)  # items are counted under the pipeline
                if route.pipeline:
                    handler = with_pipeline(route, handler, metrics)
                handler = layers.front(route, handler)
            else:
                layered = layers.plain(route, listener)  # None: no policy, keep the fast path
                if layered is not None:
                    handler = layered
                else:
                    forwarder = Forwarder(clusters[route.cluster], route.timeout_ms / 1000, loop, listener.via,
                                          listener.limits.max_buffer_bytes)
                    handler, start = forwarder, forwarder.start
            fast: Callable[[Request, Respond], Exchange | None] | None = start
            if security is not None:  # the route's own authorization policies (keeping the fast path)
                handler, fast = security.route(listener, route, handler, fast)
            entries.append((RouteMatcher(route.match), RouteEntry(route.name, handler, route, fast)))
        routers[listener.name] = Router(listener.name, RouteTable(entries))
    version = previous.version + 1 if previous else 1
    layers.activate()
    return Snapshot(config, clusters, routers, batchers, version=version, ingest=ingest, shared=layers.shared)


def _ingest(route: model.Route, clusters: dict[str, Cluster], listener: model.Listener,
            loop: asyncio.AbstractEventLoop, metrics: Registry, previous: Snapshot | None) -> IngestRoute:
    cluster = clusters.get(route.cluster) if route.cluster else None
    send = BatchSender(cluster, loop, listener.via) if cluster is not None else None
    same = previous is not None and (cluster is None or previous.clusters.get(route.cluster) is cluster)
    return build_ingest(route, send, metrics, previous.ingest if previous else {}, same)


def _batcher(route: model.Route, clusters: dict[str, Cluster], listener: model.Listener,
             loop: asyncio.AbstractEventLoop, metrics: Registry, previous: Snapshot | None,
             layers: Layers) -> BatchHandler:
    from meshbatch.batching.handler import BatchHandler

    guarded = layers.batch_sender(route, listener)  # None: no policy, the plain sender (also keeps its guards)
    if previous is not None:
        old = previous.batchers.get(route.name)
        old_route = _find_route(previous.config, route.name)
        if old is not None and old_route == route and all(
                previous.clusters.get(name) is clusters[name] for name in route_clusters(route)):
            return old
    sender = wrap_send(route, guarded if guarded is not None else BatchSender(clusters[route.cluster], loop,
                                                                                listener.via))
    assert route.batch is not None
    return BatchHandler(route.name, route.batch, sender, timeout=route.timeout_ms / 1000, metrics=metrics,
                        retry=layers.retry_policy(route))


def _find_route(config: model.Config, name: str) -> model.Route | None:
    for listener in config.listeners:
        for route in listener.routes:
            if route.name == name:
                return route
    return None


async def start_clusters(new: Snapshot, old: Snapshot | None = None) -> None:
    """Start the background work (discovery, health checks) of the clusters `old` does not have, and wait
    for their first endpoint sets (each within its discovery's `initial_fetch_timeout_ms`)."""
    running = {id(c) for c in old.clusters.values()} if old is not None else set()
    starts = [c.start() for c in new.clusters.values() if id(c) not in running]
    if starts:
        await asyncio.gather(*starts)


def stop_clusters(old: Snapshot, new: Snapshot | None = None) -> None:
    """End the background work of the clusters of `old` that `new` does not keep (their pools stay open)."""
    kept = {id(c) for c in new.clusters.values()} if new is not None else set()
    for cluster in old.clusters.values():
        if id(cluster) not in kept:
            cluster.stop()
    old.shared.release_unkept(new.shared if new is not None else Shared())  # breakers give endpoints back


def abandon(new: Snapshot, old: Snapshot) -> None:
    """A reload that failed after `new` was built: stop its new clusters; the old ones take back their endpoints."""
    stop_clusters(new, old)
    for cluster in old.clusters.values():
        cluster.reclaim()
    old.shared.activate()


async def retire(old: Snapshot, new: Snapshot, timeout: float) -> None:
    """Drain what the new snapshot no longer uses, then close its clusters."""
    await stop_ingest(old.ingest, new.ingest, timeout)
    kept_batchers = {id(b) for b in new.batchers.values()}
    drains = [b.drain(timeout) for b in old.batchers.values() if id(b) not in kept_batchers]
    if drains:
        await asyncio.gather(*drains, return_exceptions=True)
    kept = {id(c) for c in new.clusters.values()}
    for cluster in old.clusters.values():
        if id(cluster) not in kept:
            cluster.close()


__all__ = [
    "BatchSender",
    "RouteEntry",
    "Router",
    "Snapshot",
    "abandon",
    "build",
    "retire",
    "start_clusters",
    "stop_clusters",
]
