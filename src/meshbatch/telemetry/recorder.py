"""The batch recorder: a bounded record of a batching route's recent batches, the input of `meshbatch tune`.

Per batch (not per request) the dispatcher hands over the batch when its upstream call ends: when each member item
arrived, when the batch was sent and answered, its size and flush reason, and whether the call succeeded. The
record keeps the most recent batches holding at most `max_items` items in all, and is read through the admin API
(`GET /recorder?route=NAME`) as arrival timestamps and upstream timings, all on the proxy's monotonic clock.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from meshbatch.batching.batch import Batch

Record = tuple[float, float, bool, str, tuple[float, ...]]  # sent, done, ok, flush reason, member arrivals


class BatchRecorder:
    __slots__ = ("batches", "items", "max_items", "recorded")

    def __init__(self, max_items: int) -> None:
        if max_items < 1:
            raise ValueError("max_items must be >= 1")
        self.max_items = max_items
        self.batches: deque[Record] = deque()
        self.items = 0  # items held now
        self.recorded = 0  # batches recorded since start

    def add(self, batch: Batch, done: float, ok: bool) -> None:
        arrivals = tuple([item.arrived for item in batch.items])
        self.batches.append((batch.sent_at, done, ok, batch.reason, arrivals))
        self.items += len(arrivals)
        self.recorded += 1
        while self.items > self.max_items and len(self.batches) > 1:
            self.items -= len(self.batches.popleft()[4])

    def export(self) -> list[dict[str, object]]:
        return [{"sent": sent, "done": done, "ok": ok, "flush": reason, "arrivals": list(arrivals)}
                for sent, done, ok, reason, arrivals in self.batches]


__all__ = ["BatchRecorder", "Record"]
