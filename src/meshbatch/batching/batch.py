"""An upstream batch, its items and their callers: the data of the batching core.

- `Waiter`: one admitted caller, with its own future, arrival time and deadline.
- `Item`: one entry of an upstream batch. Several callers may wait on the same item when they send the same
  `idempotency-key` from the same caller scope (dedup). Its state: QUEUED (in the accumulator), REMOVED (left it
  unsent: cancelled or expired), BATCHED (a member of a batch), ANSWERED (it has a result).
- `KeyQueue`: the items of one batch key waiting in the accumulator, in three priority lanes.
- `Batch` and its lifecycle, as a transition table (core/transitions.py): open -> sealed -> in_flight -> done |
  failed. Members are added and removed only while the batch is open; sealing fixes them and the flush reason.
  Any other move raises `IllegalTransition` naming the batch, its state and the refused event.
"""

from __future__ import annotations

import asyncio
from collections import deque

from meshbatch.batching.codecs.base import ItemRequest, ItemResult
from meshbatch.core.transitions import IllegalTransition, Transitions
from meshbatch.errors import ProxyError
from meshbatch.http.message import Headers

HIGH, NORMAL, LOW = 0, 1, 2
PRIORITIES = {b"high": HIGH, b"normal": NORMAL, b"low": LOW}
PRIORITY_NAMES = ("high", "normal", "low")

# Item states. QUEUED items are in the accumulator; REMOVED ones left it unsent (cancelled or expired);
# BATCHED ones are members of a batch; ANSWERED ones have a result.
QUEUED, REMOVED, BATCHED, ANSWERED = 0, 1, 2, 3

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
    __slots__ = ("arrived", "batch", "cost", "deadline", "dedup_key", "key", "priority", "queue", "size", "state",
                 "waiters")

    def __init__(self, body: bytes, method: bytes, path: bytes, headers: Headers, *, key: Key, priority: int,
                 arrived: float, deadline: float, dedup_key: DedupKey | None = None, cost: float = 0.0) -> None:
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
        self.cost = cost  # against the batch's cost budget (batch.max_cost; 0 without one)
        self.dedup_key = dedup_key
        self.state = QUEUED
        self.waiters: list[Waiter] = []
        self.queue: KeyQueue | None = None  # the accumulator's per-key queue while QUEUED
        self.batch: Batch | None = None  # the batch once BATCHED

    def min_deadline(self) -> float:
        return min(w.deadline for w in self.waiters) if self.waiters else self.deadline

    def __repr__(self) -> str:
        return f"<Item key={self.key!r} p={PRIORITY_NAMES[self.priority]} {self.size}B waiters={len(self.waiters)}>"


class KeyQueue:
    """The items of one batch key waiting to be flushed, in three priority lanes."""

    __slots__ = ("bytes", "cost", "count", "hold_bound", "key", "lanes")

    def __init__(self, key: Key) -> None:
        self.key = key
        self.lanes: tuple[deque[Item], deque[Item], deque[Item]] = (deque(), deque(), deque())
        self.count = 0
        self.bytes = 0
        self.cost = 0.0
        self.hold_bound = float("inf")  # a shape bucket's own bound on the hold (batching/buckets.py)

    def front(self) -> Item | None:
        """The oldest queued item (removed items are dropped lazily here)."""
        best: Item | None = None
        for lane in self.lanes:
            while lane and lane[0].state != QUEUED:
                lane.popleft()
            if lane and (best is None or lane[0].arrived < best.arrived):
                best = lane[0]
        return best

    def best_lane(self) -> int:
        for index, lane in enumerate(self.lanes):
            while lane and lane[0].state != QUEUED:
                lane.popleft()
            if lane:
                return index
        return len(self.lanes)

    def lane_counts(self) -> list[int]:
        return [sum(1 for item in lane if item.state == QUEUED) for lane in self.lanes]

    def __repr__(self) -> str:
        return f"<KeyQueue {self.key!r} count={self.count} bytes={self.bytes}>"



OPEN, SEALED, IN_FLIGHT, DONE, FAILED = "open", "sealed", "in_flight", "done", "failed"

# (state, event) -> next state. Everything absent is illegal.
TRANSITIONS: dict[tuple[str, str], str] = {
    (OPEN, "add"): OPEN,
    (OPEN, "remove"): OPEN,
    (OPEN, "seal"): SEALED,
    (SEALED, "send"): IN_FLIGHT,
    (SEALED, "fail"): FAILED,
    (IN_FLIGHT, "finish"): DONE,
    (IN_FLIGHT, "fail"): FAILED,
}

BATCH_LIFECYCLE = Transitions("batch", TRANSITIONS, "a batch that is {state}")

FLUSH_REASONS = ("items", "bytes", "cost", "wait", "deadline", "drain")


class Batch:
    __slots__ = ("bytes", "cost", "created_at", "done_at", "id", "items", "key", "padding", "reason",
                 "reply_headers", "sealed_at", "sent_at", "state", "upstream")

    def __init__(self, batch_id: str, key: Key, created_at: float) -> None:
        self.id = batch_id
        self.key = key
        self.created_at = created_at
        self.items: list[Item] = []
        self.bytes = 0
        self.cost = 0.0
        self.padding = 0  # padding items at the end of `items` (batch.pad_to_preferred): no caller waits on them
        self.state = OPEN
        self.reason = ""
        self.sealed_at = self.sent_at = self.done_at = 0.0
        self.upstream = ""
        self.reply_headers: Headers = []

    def _go(self, event: str) -> None:
        self.state = BATCH_LIFECYCLE.step(self.id, self.state, event)

    def add(self, item: Item) -> None:
        self._go("add")
        if item.key != self.key:
            raise ValueError(f"batch {self.id}: item key {item.key!r} differs from the batch key {self.key!r}")
        self.items.append(item)
        self.bytes += item.size
        self.cost += item.cost
        item.state = BATCHED
        item.batch = self

    def fill(self, items: list[Item]) -> None:
        """Add several items at once (one transition check: the accumulator's hot path)."""
        self._go("add")
        key = self.key
        size = 0
        cost = 0.0
        for item in items:
            if item.key != key:
                raise ValueError(f"batch {self.id}: item key {item.key!r} differs from the batch key {key!r}")
            item.state = BATCHED
            item.batch = self
            size += item.size
            cost += item.cost
        self.items.extend(items)
        self.bytes += size
        self.cost += cost

    def remove(self, item: Item) -> None:
        self._go("remove")
        self.items.remove(item)
        self.bytes -= item.size
        self.cost -= item.cost
        item.state = REMOVED
        item.batch = None

    def seal(self, reason: str, now: float) -> None:
        if reason not in FLUSH_REASONS:
            raise ValueError(f"unknown flush reason {reason!r}; expected one of {', '.join(FLUSH_REASONS)}")
        self._go("seal")
        self.reason = reason
        self.sealed_at = now
        self.reply_headers = [
            (b"x-meshbatch-batch-id", self.id.encode()),
            (b"x-meshbatch-batch-size", str(len(self.items)).encode()),
            (b"x-meshbatch-flush", reason.encode()),
        ]

    def send(self, now: float) -> None:
        self._go("send")
        self.sent_at = now

    def finish(self, now: float) -> None:
        self._go("finish")
        self.done_at = now

    def fail(self, now: float) -> None:
        self._go("fail")
        self.done_at = now

    @property
    def size(self) -> int:
        return len(self.items)

    def callers(self) -> int:
        return sum(len(item.waiters) for item in self.items)

    def __repr__(self) -> str:
        return f"<Batch {self.id} {self.state} key={self.key!r} size={len(self.items)} reason={self.reason or '-'}>"



__all__ = ["ANSWERED", "BATCHED", "BATCH_LIFECYCLE", "DONE", "FAILED", "FLUSH_REASONS", "HIGH", "IN_FLIGHT", "LOW",
           "NORMAL", "OPEN", "PRIORITIES", "PRIORITY_NAMES", "QUEUED", "REMOVED", "SEALED", "TRANSITIONS", "Batch",
           "DedupKey", "IllegalTransition", "Item", "Key", "KeyQueue", "Outcome", "Waiter", "dedup_key"]
