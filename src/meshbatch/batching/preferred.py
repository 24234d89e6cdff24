"""Preferred batch sizes (`batch.preferred_sizes`, `batch.pad_to_preferred`), as accelerators want them.

Once a queue's hold has passed, a queue short of the smallest preferred size keeps holding, up to `max_wait_ms`
after its oldest item arrived (the wait bound), for more items to come; a queue that reaches a preferred size
is cut at the largest one it reaches, the rest waiting for the next batch. Full, deadline and drain flushes are
not held. With `pad_to_preferred`, every batch is filled up to the next preferred size with padding items of
the configured body: they have no caller, so their answers are dropped. Pure: sizes in, sizes and items out.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

from meshbatch.batching.batch import LOW, Item, Key

INF = float("inf")


class PreferredSizes:
    __slots__ = ("max_wait", "pad_body", "sizes")

    def __init__(self, sizes: list[int], max_wait: float, pad_body: bytes | None = None) -> None:
        self.sizes = sorted(sizes)
        self.max_wait = max_wait  # seconds: how long a queue short of the smallest size is held at most
        self.pad_body = pad_body  # the body of a padding item (None: no padding)

    def short(self, count: int) -> bool:
        """Whether a queue of `count` items is short of every preferred size (and so may hold)."""
        return count < self.sizes[0]

    def cut(self, count: int, cap: int) -> int:
        """How many items a held queue of `count` sends: the largest preferred size it reaches, else all."""
        index = bisect_right(self.sizes, min(count, cap))
        return self.sizes[index - 1] if index else min(count, cap)

    def pad_to(self, size: int) -> int:
        """The size a batch of `size` items is padded to (itself when it is past every preferred size)."""
        index = bisect_left(self.sizes, size)
        return self.sizes[index] if index < len(self.sizes) else size

    def padding(self, members: list[Item], key: Key, now: float) -> list[Item]:
        """The padding items a batch of `members` needs (none without `pad_to_preferred`)."""
        if self.pad_body is None or not members:
            return []
        first = members[0]
        return [Item(self.pad_body, first.method, first.path, [], key=key, priority=LOW, arrived=now, deadline=INF)
                for _ in range(self.pad_to(len(members)) - len(members))]

    def summary(self) -> dict[str, object]:
        return {"sizes": list(self.sizes), "max_wait_ms": round(self.max_wait * 1000, 3),
                "pad": self.pad_body is not None}

    def __repr__(self) -> str:
        return f"<PreferredSizes {self.sizes}>"


__all__ = ["PreferredSizes"]
