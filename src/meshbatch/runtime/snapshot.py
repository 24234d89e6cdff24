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
from meshbatch.errors import NoRoute
from meshbatch.http.message import Handler, Headers, Request, Response
from meshbatch.proxy.fast import Exchange, Respond
from meshbatch.proxy.forward import VIA, Forwarder
from meshbatch.routing.match import RouteMatcher, RouteTable
from meshbatch.telemetry.metrics import Registry
from meshbatch.upstream.cluster import Cluster

if TYPE_CHECKING:
    from meshbatch.batching.handler import BatchHandler


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

    def dump(self) -> dict[str, Any]:
        return {"version": self.version, "loaded_at": self.loaded_at,
                "config": self.config.model_dump(mode="json")}


def build(config: model.Config, loop: asyncio.AbstractEventLoop, metrics: Registry,
          previous: Snapshot | None = None) -> Snapshot:
    old_clusters = previous.clusters if previous else {}
    clusters: dict[str, Cluster] = {}
    for spec in config.clusters:
        old = old_clusters.get(spec.name)
        clusters[spec.name] = old if old is not None and old.config == spec else Cluster(spec, loop)
    batchers: dict[str, BatchHandler] = {}
    routers: dict[str, Router] = {}
    for listener in config.listeners:
        entries = []
        for route in listener.routes:
            cluster = clusters[route.cluster]
            handler: Handler
            start = None
            if route.batch is not None:
                handler = batchers[route.name] = _batcher(route, cluster, listener, loop, metrics, previous)
            else:
                forwarder = Forwarder(cluster, route.timeout_ms / 1000, loop, listener.via)
                handler, start = forwarder, forwarder.start
            entries.append((RouteMatcher(route.match), RouteEntry(route.name, handler, route, start)))
        routers[listener.name] = Router(listener.name, RouteTable(entries))
    version = previous.version + 1 if previous else 1
    return Snapshot(config, clusters, routers, batchers, version=version)


def _batcher(route: model.Route, cluster: Cluster, listener: model.Listener, loop: asyncio.AbstractEventLoop,
             metrics: Registry, previous: Snapshot | None) -> BatchHandler:
    from meshbatch.batching.handler import BatchHandler

    if previous is not None:
        old = previous.batchers.get(route.name)
        old_route = _find_route(previous.config, route.name)
        if old is not None and old_route == route and previous.clusters.get(route.cluster) is cluster:
            return old
    sender = BatchSender(cluster, loop, listener.via)
    assert route.batch is not None
    return BatchHandler(route.name, route.batch, sender, timeout=route.timeout_ms / 1000, metrics=metrics)


def _find_route(config: model.Config, name: str) -> model.Route | None:
    for listener in config.listeners:
        for route in listener.routes:
            if route.name == name:
                return route
    return None


async def retire(old: Snapshot, new: Snapshot, timeout: float) -> None:
    """Drain what the new snapshot no longer uses, then close its clusters."""
    kept_batchers = {id(b) for b in new.batchers.values()}
    drains = [b.drain(timeout) for b in old.batchers.values() if id(b) not in kept_batchers]
    if drains:
        await asyncio.gather(*drains, return_exceptions=True)
    kept = {id(c) for c in new.clusters.values()}
    for cluster in old.clusters.values():
        if id(cluster) not in kept:
            cluster.close()


__all__ = ["BatchSender", "RouteEntry", "Router", "Snapshot", "build", "retire"]
