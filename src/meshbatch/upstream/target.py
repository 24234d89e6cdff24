"""Where a request goes: a cluster, or the subset of its endpoints whose metadata has given pairs (e.g.
version=v2), with the cluster's guard (breakers, thresholds, retry budget; None when the route needs none).

A subset gets its own balancer of the cluster's kind over a view of the cluster's endpoint set; the view is
refreshed from the cluster's set (its membership and version), so it adds no watcher to any endpoint and nothing
outlives the snapshot. `pick` is where every upstream exchange chooses its endpoint (upstream/exchange.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from meshbatch.upstream.balancers import BALANCERS, Balancer
from meshbatch.upstream.cluster import Cluster
from meshbatch.upstream.endpoint import Endpoint
from meshbatch.upstream.endpoint_set import EndpointSet
from meshbatch.upstream.guard import ClusterGuard


class Target:
    __slots__ = ("_all", "_balancer", "_version", "_view", "cluster", "fallback", "guard", "label", "subset")

    def __init__(self, cluster: Cluster, guard: ClusterGuard | None = None, subset: dict[str, str] | None = None,
                 fallback: bool = False) -> None:
        self.cluster = cluster
        self.guard = guard
        self.subset = tuple(sorted((subset or {}).items()))
        self.fallback = fallback  # an empty subset falls back to any endpoint of the cluster
        self.label = cluster.name + ("{" + ",".join(f"{k}={v}" for k, v in self.subset) + "}" if self.subset else "")
        self._all: tuple[Endpoint, ...] | None = None
        self._version = -1
        self._view = EndpointSet()  # no members: attaches no watcher
        self._balancer: Balancer | None = None

    def _refresh(self) -> EndpointSet:
        hosts = self.cluster.hosts
        view = self._view
        if hosts.all is not self._all:
            self._all = hosts.all
            pairs = self.subset
            view.all = tuple(e for e in hosts.all if all(e.metadata.get(k) == v for k, v in pairs))
            self._version = -1
            self._balancer = None
        if hosts.version != self._version:
            self._version = hosts.version
            view.available = tuple(e for e in view.all if not e.down)
            view.version += 1
        return view

    def members(self) -> tuple[Endpoint, ...]:
        return self._refresh().all if self.subset else self.cluster.hosts.all

    def available(self) -> tuple[Endpoint, ...]:
        return self._refresh().available if self.subset else self.cluster.hosts.available

    def balancer(self) -> Balancer:
        if not self.subset:
            return self.cluster.balancer
        view = self._refresh()
        if self._balancer is None:
            config = self.cluster.config
            self._balancer = BALANCERS.get(config.lb)(view, config.lb_config)
        return self._balancer

    def pick(self, key: bytes | None, tried: Sequence[Endpoint], now: float) -> Endpoint | None:
        """One endpoint: a due probe of an open breaker first, else the balancer's choice, avoiding `tried`
        (the endpoints this request already failed on) while another one is available."""
        guard = self.guard
        if guard is not None and guard.config.endpoint is not None:
            probe = guard.probe(now, self.members(), tried)
            if probe is not None:
                return probe
        balancer = self.balancer()
        endpoint = balancer.pick(key)
        if endpoint is None and self.subset and self.fallback:
            balancer = self.cluster.balancer
            endpoint = balancer.pick(key)
        if endpoint is None or not tried or endpoint not in tried:
            return endpoint
        for _ in range(2):  # a fresh choice (a hashing balancer repeats itself for the same key)
            other = balancer.pick(None)
            if other is not None and other not in tried:
                return other
        live = self.available() or (self.cluster.hosts.available if self.fallback else ())
        for other in live:
            if other not in tried:
                return other
        return endpoint  # every endpoint failed this request already: the balancer's choice again

    def __repr__(self) -> str:
        return f"<Target {self.label}>"


__all__ = ["Target"]
