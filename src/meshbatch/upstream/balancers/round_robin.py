"""Round robin over the healthy endpoints, respecting weights (smooth weighted round robin, as nginx does)."""

from __future__ import annotations

from collections.abc import Sequence

from meshbatch.upstream.balancers.base import BALANCERS
from meshbatch.upstream.endpoint import Endpoint


class RoundRobin:
    __slots__ = ("_current", "_endpoints", "_i", "_uniform")

    def __init__(self, endpoints: Sequence[Endpoint]) -> None:
        self._endpoints = tuple(endpoints)
        self._uniform = len({e.weight for e in self._endpoints}) <= 1
        self._current = [0] * len(self._endpoints)
        self._i = 0

    def pick(self, key: bytes | None = None) -> Endpoint | None:
        endpoints = self._endpoints
        n = len(endpoints)
        if self._uniform:
            for _ in range(n):
                endpoint = endpoints[self._i % n]
                self._i += 1
                if endpoint.healthy:
                    return endpoint
            return None
        best = -1
        total = 0
        current = self._current
        for i, endpoint in enumerate(endpoints):
            if not endpoint.healthy:
                continue
            current[i] += endpoint.weight
            total += endpoint.weight
            if best < 0 or current[i] > current[best]:
                best = i
        if best < 0:
            return None
        current[best] -= total
        return endpoints[best]


BALANCERS.register("round_robin")(RoundRobin)

__all__ = ["RoundRobin"]
