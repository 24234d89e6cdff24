"""Round robin over the available endpoints, respecting weights (smooth weighted round robin, as nginx does)."""

from __future__ import annotations

from meshbatch.config.plain import LbConfig
from meshbatch.upstream.balancers.base import BALANCERS, uniform
from meshbatch.upstream.endpoint import Endpoint
from meshbatch.upstream.endpoint_set import EndpointSet


class RoundRobin:
    __slots__ = ("_current", "_endpoints", "_i", "_uniform")

    def __init__(self, endpoints: EndpointSet, config: LbConfig | None = None) -> None:
        self._endpoints = endpoints
        self._uniform = uniform(endpoints)
        self._current: dict[int, int] = {}
        self._i = 0

    def pick(self, key: bytes | None = None) -> Endpoint | None:
        live = self._endpoints.available
        if self._uniform:
            n = len(live)
            if not n:
                return None
            i = self._i
            self._i = i + 1
            return live[i % n]
        best: Endpoint | None = None
        best_value = 0
        total = 0
        current = self._current
        for endpoint in live:
            value = current.get(id(endpoint), 0) + endpoint.weight
            current[id(endpoint)] = value
            total += endpoint.weight
            if best is None or value > best_value:
                best, best_value = endpoint, value
        if best is not None:
            current[id(best)] = best_value - total
        return best


BALANCERS.register("round_robin")(RoundRobin)

__all__ = ["RoundRobin"]
