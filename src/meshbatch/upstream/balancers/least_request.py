"""Least request by the power of two choices: of two random healthy endpoints, the one with fewer in flight.

Weights scale the comparison (active / weight), as Envoy does.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from meshbatch.upstream.balancers.base import BALANCERS, healthy
from meshbatch.upstream.endpoint import Endpoint


class LeastRequest:
    __slots__ = ("_endpoints", "_rng")

    def __init__(self, endpoints: Sequence[Endpoint], rng: random.Random | None = None) -> None:
        self._endpoints = tuple(endpoints)
        self._rng = rng or random.Random()

    def pick(self, key: bytes | None = None) -> Endpoint | None:
        live = healthy(self._endpoints)
        if len(live) <= 1:
            return live[0] if live else None
        a, b = self._rng.sample(live, 2)
        return a if (a.active + 1) / a.weight <= (b.active + 1) / b.weight else b


BALANCERS.register("least_request")(LeastRequest)

__all__ = ["LeastRequest"]
