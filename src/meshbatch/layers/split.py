"""Weighted splits across targets (canary): `Split` picks one target (upstream/target.py) per request, or per
batch, by weight: at random, or by a hash of a header so that one caller stays on one side.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable, Sequence

from meshbatch.http.message import Response
from meshbatch.layers.metrics import LayerMetrics
from meshbatch.service import Call, Service
from meshbatch.upstream.target import Target


class Split:
    """One of several targets by weight; with a key header, the same value always gets the same target."""

    __slots__ = ("_bounds", "_random", "header", "targets", "total")

    def __init__(self, targets: Sequence[tuple[Target, int]], header: bytes | None = None,
                 rng: Callable[[], float] | None = None) -> None:
        weighted = [(t, w) for t, w in targets if w > 0] or list(targets[:1])
        self.targets = [t for t, _ in weighted]
        bounds, total = [], 0
        for _, weight in weighted:
            total += max(weight, 1) if len(weighted) == 1 else weight
            bounds.append(total)
        self._bounds = bounds
        self.total = total
        self.header = header
        self._random = rng or random.random

    def choose(self, value: bytes | None = None) -> Target:
        if len(self.targets) == 1:
            return self.targets[0]
        point = zlib.crc32(value) % self.total if value is not None else int(self._random() * self.total)
        for target, bound in zip(self.targets, self._bounds, strict=True):
            if point < bound:
                return target
        return self.targets[-1]

    def __repr__(self) -> str:
        return f"<Split {', '.join(t.label for t in self.targets)}>"


class SplitLayer:
    """A plain route's split: the target is chosen once per request; its retries stay on it."""

    __slots__ = ("inner", "metrics", "route", "split")

    def __init__(self, inner: Service, split: Split, route: str, metrics: LayerMetrics | None = None) -> None:
        self.inner = inner
        self.split = split
        self.route = route
        self.metrics = metrics

    async def __call__(self, call: Call) -> Response:
        split = self.split
        target = split.choose(call.request.header(split.header) if split.header is not None else None)
        call.target = target
        if self.metrics is not None:
            self.metrics.splits.inc((self.route, target.label))
        return await self.inner(call)


__all__ = ["Split", "SplitLayer", "Target"]
