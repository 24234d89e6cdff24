"""A cluster: named endpoints behind one balancer. `send` makes one upstream exchange on one endpoint.

The endpoint set comes from the cluster's discovery source (static by default) and may change while the
proxy runs; endpoints that stay keep their pools and counters. Health (active checks, outlier detection)
takes endpoints out of balancing and brings them back. `start()` begins the background work (discovery,
health) and waits for the first endpoint set; `stop()` ends it; `close()` also closes the pools.

A cluster rebuilt on reload (its config changed) adopts the endpoints of the one it replaces, with their
pools, counters, load estimates and ejections, so that a reload drops no warm connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from meshbatch.config import plain
from meshbatch.discovery import SOURCES, EndpointSource
from meshbatch.http.pool import ConnectionBudget, PoolLimits
from meshbatch.upstream.balancers import BALANCERS, Balancer
from meshbatch.upstream.endpoint import EJECTED, FAILED_ACTIVE_CHECK, Endpoint
from meshbatch.upstream.endpoint_set import EndpointSet
from meshbatch.upstream.health import ActiveChecks, HealthRunner, OutlierDetector

if TYPE_CHECKING:
    from meshbatch.security.client import ClientTls

log = logging.getLogger("meshbatch.upstream")


def _spec(item: str | plain.EndpointSpec) -> plain.EndpointSpec:
    return plain.EndpointSpec(address=item) if isinstance(item, str) else item


class Cluster:
    __slots__ = ("_adopt", "_limits", "_loop", "_ready", "_runner", "_source_task", "balancer", "checks", "config",
                 "hash_header", "hosts", "name", "outlier", "source", "upstream_errors")

    def __init__(self, config: plain.Cluster, loop: asyncio.AbstractEventLoop,
                 previous: Cluster | None = None, tls: ClientTls | None = None) -> None:
        self.config = config
        self.name = config.name
        self._loop = loop
        self._limits = PoolLimits(
            max_connections=config.max_connections,
            max_pending=config.max_pending,
            connect_timeout=config.connect_timeout_ms / 1000,
            idle_timeout=config.idle_timeout_ms / 1000,
            max_response_bytes=config.max_response_bytes,
            tls=tls,  # mTLS to the endpoints (meshbatch.security), None for plaintext
            # circuit_breakers.max_connections caps connections across all endpoints: their pools share it
            budget=ConnectionBudget(config.circuit_breakers.max_connections) if config.circuit_breakers else None,
            protocol=config.protocol,
        )
        self.hash_header = config.hash_key.partition(":")[2].lower().encode() if config.hash_key else None
        self.upstream_errors: dict[str, int] = dict(previous.upstream_errors) if previous else {}
        discovery = config.discovery or plain.Discovery()
        self.source: EndpointSource = SOURCES.get(discovery.type).factory(discovery, config.name)
        self.hosts = EndpointSet()
        now = loop.time()
        self.checks = ActiveChecks(config.health_check) if config.health_check else None
        self.outlier = OutlierDetector(config.outlier_detection, self.hosts, now) \
            if config.outlier_detection else None
        self._runner = HealthRunner(self.name, self.checks, self.outlier, loop)
        self._ready = asyncio.Event()
        self._source_task: asyncio.Task[None] | None = None
        self.balancer: Balancer = BALANCERS.get(config.lb)(self.hosts, config.lb_config)
        # endpoints of the cluster this one replaces, taken over (pool and all) when an address stays
        self._adopt = {e.address: e for e in previous.hosts.all if not e.pool.closed} if previous else {}
        if SOURCES.get(discovery.type).dynamic:
            if previous is not None and previous.config.discovery == config.discovery:
                self._set([plain.EndpointSpec(address=e.address, weight=e.weight, metadata=e.metadata)
                           for e in previous.hosts.all])
                self._ready.set()
        else:
            self._set([_spec(item) for item in config.endpoints])
            self._ready.set()
        self._adopt.clear()

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        return self.hosts.all

    # membership ------------------------------------------------------------------------------------
    def set_endpoints(self, specs: list[plain.EndpointSpec]) -> None:
        """A new endpoint set (from discovery): endpoints that stay keep their pools and counters."""
        self._set(specs)
        self._ready.set()
        self._runner.wake()

    def _set(self, specs: list[plain.EndpointSpec]) -> None:
        current = {e.address: e for e in self.hosts.all}
        before = [(e.address, e.weight) for e in self.hosts.all]
        now = self._loop.time()
        members: dict[str, Endpoint] = {}
        for spec in specs:
            if spec.address in members:
                continue
            endpoint = current.pop(spec.address, None)
            if endpoint is None:
                endpoint = self._adopt.pop(spec.address, None)
                if endpoint is None:
                    endpoint = Endpoint(spec.address, spec.weight, spec.metadata, self._limits, self._loop)
                self._configure(endpoint)
            endpoint.weight = spec.weight
            endpoint.metadata = dict(spec.metadata)
            if self.checks is not None:
                self.checks.add(endpoint, now)
            members[spec.address] = endpoint
        for gone in current.values():
            self._release(gone)
        self.hosts.replace(members.values())
        if [(e.address, e.weight) for e in self.hosts.all] != before:
            self.balancer = BALANCERS.get(self.config.lb)(self.hosts, self.config.lb_config)
            if before:
                log.info("cluster %s: endpoints now %s", self.name, ", ".join(members) or "none")

    def _configure(self, endpoint: Endpoint) -> None:
        """Make `endpoint` this cluster's: its pool limits, load-estimate settings and health mechanisms."""
        lb = self.config.lb_config
        endpoint.owner = self
        endpoint.pool.set_limits(self._limits)
        if not endpoint.rtt_at:
            endpoint.rtt = lb.default_rtt_ms / 1000
        endpoint.decay = lb.decay_ms / 1000
        endpoint.penalty_value = lb.failure_penalty_ms / 1000
        endpoint.penalty_decay = lb.failure_penalty_decay_ms / 1000
        if self.outlier is not None:
            self.outlier.attach(endpoint)
        else:
            OutlierDetector.detach(endpoint)
        if self.checks is None and endpoint.down & FAILED_ACTIVE_CHECK:
            endpoint.set_down(FAILED_ACTIVE_CHECK, False)

    def reclaim(self) -> None:
        """Take back this cluster's endpoints from a replacement that was abandoned (a failed reload)."""
        for endpoint in self.hosts.all:
            self._configure(endpoint)
        self.hosts.replace(self.hosts.all)

    def _release(self, endpoint: Endpoint) -> None:
        if self.checks is not None:
            self.checks.remove(endpoint)
        if endpoint.owner is self:
            endpoint.pool.close()  # busy connections close when their exchange ends

    # background work -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start discovery and health checks; wait (at most `initial_fetch_timeout_ms`) for a first set."""
        discovery = self.config.discovery
        if self._source_task is None and discovery is not None and SOURCES.get(discovery.type).dynamic:
            self._source_task = self._loop.create_task(self._discover())
        self._runner.start()
        if not self._ready.is_set() and discovery is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(discovery.initial_fetch_timeout_ms / 1000):
                    await self._ready.wait()

    async def _discover(self) -> None:
        try:
            await self.source.run(self.set_endpoints)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("cluster %s: discovery stopped", self.name)

    def stop(self) -> None:
        """End discovery and health checks (pools stay open for requests in flight)."""
        if self._source_task is not None:
            self._source_task.cancel()
            self._source_task = None
        self._runner.stop()

    def close(self) -> None:
        self.stop()
        for endpoint in self.hosts.all:
            if endpoint.owner is self:
                endpoint.pool.close()
        self.hosts.detach()

    # state -----------------------------------------------------------------------------------------
    def summary(self) -> dict[str, object]:
        now = self._loop.time()
        out: dict[str, object] = {
            "name": self.name,
            "lb": self.config.lb,
            "discovery": self.source.summary(),
            "available": len(self.hosts.available),
            "endpoints": [e.summary(now) for e in self.hosts.all],
            "upstream_errors": dict(self.upstream_errors),
        }
        if self.outlier is not None:
            out["outlier_detection"] = self.outlier.summary()
        if self.checks is not None:
            out["health_checks"] = self.checks.summary()
        return out

    def __repr__(self) -> str:
        return (f"<Cluster {self.name} endpoints={len(self.hosts.available)}/{len(self.hosts.all)} "
                f"lb={self.config.lb}>")


__all__ = ["EJECTED", "FAILED_ACTIVE_CHECK", "Cluster"]
