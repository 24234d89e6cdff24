"""Shape buckets (`batch.bucket_by`): items of similar cost share batches, items of different cost never do.

`boundaries: [b1, b2, ...]` cut the cost line into buckets: [0, b1), [b1, b2), ..., [bn, inf). An item's bucket is
the last part of its queue key (after the `batch.key` parts), so each bucket of each batch key has its own queue
and a batch never mixes buckets; the upstream request carries the batch key as before, not the bucket. A bucket's
queue is held at most its own bound (`max_hold_ms`, one for all or one per bucket; the route's hold by default):
a rare bucket is not kept waiting for companions that seldom come, whatever the busy buckets hold for.
"""

from __future__ import annotations

from bisect import bisect_right

from meshbatch.batching.batch import Key
from meshbatch.config.plain import BucketBy

INF = float("inf")


def _label(low: float, high: float) -> str:
    return f"{low:g}+" if high == INF else f"{low:g}-{high:g}"


class Buckets:
    __slots__ = ("boundaries", "holds", "labels", "names", "parts")

    def __init__(self, config: BucketBy, key_parts: int) -> None:
        self.boundaries = list(config.boundaries)
        edges = [0.0, *self.boundaries, INF]
        self.names = [_label(edges[i], edges[i + 1]) for i in range(len(edges) - 1)]
        self.labels = [name.encode() for name in self.names]
        self.parts = key_parts  # the batch key's own parts come first in a queue key
        bound = config.max_hold_ms
        holds = bound if isinstance(bound, list) else [bound] * len(self.names)
        # the hold bound of each bucket, by its label (seconds; INF: the route's hold alone)
        self.holds: dict[bytes, float] = {label: INF if ms is None else ms / 1000
                                          for label, ms in zip(self.labels, holds, strict=True)}

    def index(self, cost: float) -> int:
        return bisect_right(self.boundaries, cost)

    def split(self, key: Key) -> tuple[Key, str]:
        """(the batch key, the bucket's name) of a queue key."""
        return key[:self.parts], key[self.parts].decode()

    def summary(self, items: list[int]) -> list[dict[str, object]]:
        """Each bucket, its hold bound and the items admitted into it (for /batchers)."""
        return [{"bucket": name, "max_hold_ms": None if hold == INF else round(hold * 1000, 3), "items": count}
                for name, hold, count in zip(self.names, self.holds.values(), items, strict=True)]

    def __repr__(self) -> str:
        return f"<Buckets {' '.join(self.names)}>"


__all__ = ["Buckets"]
