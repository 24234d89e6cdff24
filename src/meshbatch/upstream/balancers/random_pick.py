"""Random choice among the available endpoints, weighted."""

from __future__ import annotations

import random
from bisect import bisect_right
from itertools import accumulate

from meshbatch.config.plain import LbConfig
from meshbatch.upstream.balancers.base import BALANCERS, uniform
from meshbatch.upstream.endpoint import Endpoint
from meshbatch.upstream.endpoint_set import EndpointSet


class RandomPick:
    __slots__ = ("_cumulative", "_endpoints", "_random", "_uniform", "_version")

    def __init__(self, endpoints: EndpointSet, config: LbConfig | None = None,
                 rng: random.Random | None = None) -> None:
        self._endpoints = endpoints
        self._random = (rng or random.Random()).random
        self._uniform = uniform(endpoints)
        self._version = -1
        self._cumulative: list[int] = []

    def pick(self, key: bytes | None = None) -> Endpoint | None:
        endpoints = self._endpoints
        live = endpoints.available
        if not live:
            return None
        if self._uniform:
            return live[int(self._random() * len(live))]
        if self._version != endpoints.version:
            self._cumulative = list(accumulate(e.weight for e in live))
            self._version = endpoints.version
        cumulative = self._cumulative
        return live[min(bisect_right(cumulative, self._random() * cumulative[-1]), len(live) - 1)]


BALANCERS.register("random")(RandomPick)

__all__ = ["RandomPick"]
