"""Least request. Equal weights: the power of two choices (of `choice_count` random available endpoints, the
one with the fewest requests in flight). Unequal weights: a random pick with probability proportional to
weight / (in flight + 1), so that an idle cluster still splits traffic by weight (as Envoy does)."""

from __future__ import annotations

import random

from meshbatch.config.plain import LbConfig
from meshbatch.upstream.balancers.base import BALANCERS, uniform
from meshbatch.upstream.endpoint import Endpoint
from meshbatch.upstream.endpoint_set import EndpointSet


class LeastRequest:
    __slots__ = ("_choices", "_endpoints", "_random", "_uniform")

    def __init__(self, endpoints: EndpointSet, config: LbConfig | None = None,
                 rng: random.Random | None = None) -> None:
        self._endpoints = endpoints
        self._choices = config.choice_count if config is not None else 2
        self._random = (rng or random.Random()).random
        self._uniform = uniform(endpoints)

    def pick(self, key: bytes | None = None) -> Endpoint | None:
        live = self._endpoints.available
        n = len(live)
        if n <= 1:
            return live[0] if n else None
        rand = self._random
        if not self._uniform:
            return _weighted(live, rand())
        a = live[int(rand() * n)]
        for _ in range(min(self._choices, n) - 1):
            b = live[int(rand() * n)]
            while b is a:
                b = live[int(rand() * n)]
            if b.active < a.active:
                a = b
        return a


def _weighted(live: tuple[Endpoint, ...], r: float) -> Endpoint:
    shares = [e.weight / (e.active + 1) for e in live]
    point = r * sum(shares)
    for endpoint, share in zip(live, shares, strict=True):
        point -= share
        if point < 0:
            return endpoint
    return live[-1]


BALANCERS.register("least_request")(LeastRequest)

__all__ = ["LeastRequest"]
