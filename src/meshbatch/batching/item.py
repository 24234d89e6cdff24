"""A queued upstream item and the callers waiting on it.

One `Item` is one entry of an upstream batch. Several callers may wait on the same item when they send the same
`idempotency-key` from the same caller scope (dedup): each is a `Waiter` with its own future, arrival time and
deadline.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from meshbatch.batching.codecs.base import ItemRequest, ItemResult
from meshbatch.errors import ProxyError
from meshbatch.http.message import Headers

if TYPE_CHECKING:
    from meshbatch.batching.accumulator import KeyQueue
    from meshbatch.batching.batch import Batch

HIGH, NORMAL, LOW = 0, 1, 2
PRIORITIES = {b"high": HIGH, b"normal": NORMAL, b"low": LOW}
PRIORITY_NAMES = ("high", "normal", "low")

# Item states. QUEUED items are in the accumulator; REMOVED ones left it unsent (cancelled or expired);
# BATCHED ones are members of a sealed batch; DONE ones have a result.
QUEUED, REMOVED, BATCHED, DONE = 0, 1, 2, 3

Outcome = ItemResult | ProxyError
Key = tuple[bytes, ...]
# ((caller scope digest, *batch key), idempotency key): the scope first, so that no batch key (a header the
# caller chooses) can stand in for it; the batch key's parts are as many on every request of a route.
DedupKey = tuple[Key, bytes]


def dedup_key(scope: bytes, key: Key, idempotency: bytes) -> DedupKey:
    """The key under which an item is shared (dedup) and its answer kept (replay): one caller scope's key."""
    return (scope, *key), idempotency


class Waiter:
    """One admitted caller. `future` gets exactly one `Outcome`."""

    __slots__ = ("arrived", "deadline", "future", "item", "trace")

    def __init__(self, future: asyncio.Future[Outcome], arrived: float, deadline: float, item: Item,
                 trace: bytes | None = None) -> None:
        self.future = future
        self.arrived = arrived
        self.deadline = deadline
        self.item = item
        self.trace = trace  # a dedup joiner's traceparent (tracing on): the batch span links it too

    def resolve(self, outcome: Outcome) -> None:
        future = self.future
        if not future.done():
            future.set_result(outcome)


class Item(ItemRequest):
    __slots__ = ("arrived", "batch", "deadline", "dedup_key", "key", "priority", "queue", "size", "state",
                 "waiters")

    def __init__(self, body: bytes, method: bytes, path: bytes, headers: Headers, *, key: Key, priority: int,
                 arrived: float, deadline: float, dedup_key: DedupKey | None = None) -> None:
        self.id = ""  # ItemRequest's fields, set inline: this runs once per request
        self.body = body
        self.method = method
        self.path = path
        self.headers = headers
        self.key = key
        self.priority = priority
        self.arrived = arrived
        self.deadline = deadline
        self.size = len(body)
        self.dedup_key = dedup_key
        self.state = QUEUED
        self.waiters: list[Waiter] = []
        self.queue: KeyQueue | None = None  # the accumulator's per-key queue while QUEUED
        self.batch: Batch | None = None  # the batch once BATCHED

    def min_deadline(self) -> float:
        return min(w.deadline for w in self.waiters) if self.waiters else self.deadline

    def __repr__(self) -> str:
        return f"<Item key={self.key!r} p={PRIORITY_NAMES[self.priority]} {self.size}B waiters={len(self.waiters)}>"


__all__ = [
    "BATCHED",
    "DONE",
    "HIGH",
    "LOW",
    "NORMAL",
    "PRIORITIES",
    "PRIORITY_NAMES",
    "QUEUED",
    "REMOVED",
    "DedupKey",
    "Item",
    "Key",
    "Outcome",
    "Waiter",
    "dedup_key",
]
