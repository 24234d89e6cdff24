"""A snapshot: everything built from one config (clusters, each listener's routes as stacks, batchers, ingest
routes), swapped as one reference.

On reload a new snapshot is built next to the old one. Clusters and batchers whose config did not change
are carried over as they are (warm connections, queued items); the rest of the old snapshot retires: its
batchers drain, then its clusters close. Each route becomes one stack of its kind (runtime/stacks/: plain,
batch, ingest); each listener gets its own checks (JWT, policies) and its route table, which the running
proxy turns into the listener's request stack (runtime/listener.py).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, assert_never

from meshbatch.config import plain
from meshbatch.config.redact import redact_config
from meshbatch.layers.authz import JwtCheck, PolicyCheck
from meshbatch.layers.shared import Shared
from meshbatch.routing.match import RouteMatcher, RouteTable
from meshbatch.runtime.ingest import stop_ingest
from meshbatch.runtime.stacks.parts import Parts, route_clusters
from meshbatch.runtime.stacks.plain import plain_stack
from meshbatch.security.policy import Authorizer
from meshbatch.service import Check, RouteStack
from meshbatch.telemetry.metrics import Registry
from meshbatch.upstream.cluster import Cluster

if TYPE_CHECKING:
    from meshbatch.batching.handler import BatchHandler
    from meshbatch.ingest.route import IngestRoute
    from meshbatch.runtime.security import Security


@dataclass(slots=True)
class Snapshot:
    config: plain.Config
    clusters: dict[str, Cluster]
    routes: dict[str, RouteTable[RouteStack]]  # each listener's routes, in order
    checks: dict[str, tuple[Check, ...]]  # each listener's own checks (JWT, policies), before its routes
    batchers: dict[str, BatchHandler]
    loaded_at: float = field(default_factory=time.time)
    version: int = 1
    ingest: dict[str, IngestRoute] = field(default_factory=dict)
    shared: Shared = field(default_factory=Shared)  # state of the resilience layers (meshbatch.layers)

    def dump(self) -> dict[str, Any]:
        """The config as /config_dump shows it: every secret redacted (meshbatch.config.redact)."""
        return {"version": self.version, "loaded_at": self.loaded_at, "config": redact_config(self.config)}


def build(config: plain.Config, loop: asyncio.AbstractEventLoop, metrics: Registry,
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
    parts = Parts.of(clusters, loop, metrics, previous.shared if previous else None, security)
    batchers: dict[str, BatchHandler] = {}
    ingest: dict[str, IngestRoute] = {}
    routes: dict[str, RouteTable[RouteStack]] = {}
    checks: dict[str, tuple[Check, ...]] = {}
    for listener in config.listeners:
        entries: list[tuple[RouteMatcher, RouteStack]] = []
        for route in listener.routes:
            stack: RouteStack
            match route:  # one stack per kind, decided when the config was validated (config/model/routes.py)
                case plain.IngestRoute():  # accept durably (202), deliver later: meshbatch.ingest
                    from meshbatch.runtime.stacks.ingest import ingest_stack  # (a config with such a route)

                    ingest[route.name] = _ingest(listener, route, parts, previous)
                    stack = ingest_stack(listener, route, parts, ingest[route.name])
                case plain.BatchRoute():
                    from meshbatch.runtime.stacks.batch import batch_stack  # (a config with such a route)

                    stack, batchers[route.name] = batch_stack(listener, route, parts,
                                                              _kept_batcher(route, clusters, previous))
                case plain.PlainRoute():
                    stack = plain_stack(listener, route, parts)
                case _:
                    assert_never(route)
            entries.append((RouteMatcher(route.match), stack))
        routes[listener.name] = RouteTable(entries)
        checks[listener.name] = _listener_checks(listener, security)
    version = previous.version + 1 if previous else 1
    parts.activate()
    return Snapshot(config, clusters, routes, checks, batchers, version=version, ingest=ingest, shared=parts.shared)


def _listener_checks(listener: plain.Listener, security: Security | None) -> tuple[Check, ...]:
    """JWT authentication, then the listener's policies: every request, before any route is matched."""
    if security is None:
        return ()
    out: list[Check] = []
    if listener.jwt is not None:
        out.append(JwtCheck(security.validator(listener.name, listener.jwt)))
    if listener.policies:
        out.append(PolicyCheck(Authorizer(listener.policies), security.stats, listener.name, "listener"))
    return tuple(out)


def _ingest(listener: plain.Listener, route: plain.IngestRoute, parts: Parts, previous: Snapshot | None) -> IngestRoute:
    from meshbatch.runtime.ingest import build_ingest
    from meshbatch.runtime.stacks.batch import batch_sender

    cluster = parts.clusters.get(route.cluster) if route.cluster else None
    send = batch_sender(listener, route, parts) if cluster is not None else None
    same = previous is not None and (cluster is None or previous.clusters.get(route.cluster) is cluster)
    return build_ingest(route, send, parts.registry, previous.ingest if previous else {}, same)


def _kept_batcher(route: plain.BatchRoute, clusters: dict[str, Cluster],
                  previous: Snapshot | None) -> BatchHandler | None:
    """The previous snapshot's batcher of this route, when its config and every cluster it sends to are the same."""
    if previous is None:
        return None
    old = previous.batchers.get(route.name)
    if old is not None and _find_route(previous.config, route.name) == route and all(
            previous.clusters.get(name) is clusters[name] for name in route_clusters(route)):
        return old
    return None


def _find_route(config: plain.Config, name: str) -> plain.Route | None:
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
    "Snapshot",
    "abandon",
    "build",
    "retire",
    "start_clusters",
    "stop_clusters",
]
