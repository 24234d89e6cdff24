"""Uniform random choice among the healthy endpoints, weighted."""

from __future__ import annotations

import random
from collections.abc import Sequence

from meshbatch.upstream.balancers.base import BALANCERS, healthy
from meshbatch.upstream.endpoint import Endpoint


class RandomPick:
    __slots__ = ("_endpoints", "_rng")

    def __init__(self, endpoints: Sequence[Endpoint], rng: random.Random | None = None) -> None:
        self._endpoints = tuple(endpoints)
        self._rng = rng or random.Random()

    def pick(self, key: bytes | None = None) -> Endpoint | None:
        live = healthy(self._endpoints)
        if not live:
            return None
        return self._rng.choices(live, weights=[e.weight for e in live])[0]


BALANCERS.register("random")(RandomPick)

__all__ = ["RandomPick"]
