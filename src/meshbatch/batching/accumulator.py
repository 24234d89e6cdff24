"""The accumulator: a pure, clock-free core that queues items per batch key and decides what to flush.

It takes events with an explicit `now` and returns decisions; it never sleeps, schedules or sends. The shell
(`Dispatcher`) asks it which batches are ready when in-flight slots are free (`drain_ready(now, limit)`), which
waiting callers can no longer make their deadline (`expire(now)`), and when to look again (`next_deadline`).

Rules, in the order a flush reason is chosen for a queue:
- `drain`: the route is draining, everything queued goes;
- `items`: `cap` items are queued (`max_items`, or the adaptive size cap);
- `bytes`: the queued bodies reach `max_bytes`;
- `cost`: the queued items' costs reach `max_cost` (batch.max_cost; an item costing more goes alone);
- `deadline`: an item must be sent now to finish before its deadline (deadline - predicted tail time of a full
  batch - a scheduling margin; while the prediction is not trusted yet (`trusted()` false: too few batches
  seen), the hold time is reserved as well, so holding never spends a caller's whole budget on an upstream
  whose time is unknown);
- `wait`: the oldest item has been held `hold` seconds (`min_wait_ms`, or the adaptive wait; a shape bucket's
  queue at most its own bound, batching/buckets.py; a queue short of every preferred size holds on up to
  `max_wait_ms`, one past one is cut at the largest it reaches: batching/preferred.py). With a hold of
  zero a queue is ready as soon as a slot is free: the shell flushes at the end of the event-loop tick, and
  batches grow by themselves while every slot is busy.
Each key has its own queue (keys never share a batch) with three priority lanes; a batch takes high items
first, then normal, then low, first-in first-out within a lane; across keys the queue holding the highest
priority goes first, then the one with an urgent deadline, then the oldest, or, with `fairness`, the key whose
turn it is in a weighted deficit round robin (batching/fairness.py).
An item whose deadline cannot be met by the expected batch time is never put into a batch: its callers are
returned as expired for the shell to answer 504.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable

from meshbatch.batching.batch import QUEUED, REMOVED, Batch, Item, Key, KeyQueue, Waiter
from meshbatch.batching.fairness import FairShare
from meshbatch.batching.preferred import PreferredSizes

INF = float("inf")
Predict = Callable[[int], float]


def _zero(_: int) -> float:
    return 0.0


def _counter_ids() -> Callable[[], str]:
    counter = itertools.count(1)
    return lambda: str(next(counter))


class Accumulator:
    def __init__(self, *, max_items: int, max_bytes: int, hold: float = 0.0, margin: float = 0.001,
                 expected: Predict = _zero, tail: Predict = _zero, trusted: Callable[[], bool] | None = None,
                 new_id: Callable[[], str] | None = None, max_cost: float = INF,
                 hold_bounds: dict[bytes, float] | None = None, fair: FairShare | None = None,
                 preferred: PreferredSizes | None = None) -> None:
        self.cap = max_items  # the size cap; the adaptive controller may lower it
        self.max_bytes = max_bytes
        self.max_cost = max_cost  # the cost budget of one batch (INF: none)
        self.hold_bounds = hold_bounds  # shape buckets: the hold bound by a queue key's last part (the bucket)
        self.fair = fair  # weighted fair turns between batch keys (None: the oldest queue first)
        self.preferred = preferred  # preferred batch sizes and padding (None: any size)
        self.hold = hold  # how long a queue is held before a free slot takes it
        self.margin = margin  # scheduling allowance before a deadline-driven flush
        self.expected = expected  # predicted typical upstream time of a batch of n items
        self.tail = tail  # predicted high-quantile upstream time of a batch of n items
        self.trusted = trusted  # whether those predictions rest on enough batches (None: always)
        self.draining = False
        self.queues: dict[Key, KeyQueue] = {}
        self.queued = 0
        self.added = 0
        self._heap: list[tuple[float, int, Item]] = []
        self._seq = itertools.count()
        self._new_id = new_id or _counter_ids()

    # -- events ---------------------------------------------------------------------------------------------

    def add(self, item: Item, now: float) -> KeyQueue:
        queue = self.queues.get(item.key)
        if queue is None:
            queue = self.queues[item.key] = KeyQueue(item.key)
            if self.hold_bounds is not None:
                queue.hold_bound = self.hold_bounds.get(item.key[-1], INF)
        queue.lanes[item.priority].append(item)
        queue.count += 1
        queue.bytes += item.size
        queue.cost += item.cost
        item.queue = queue
        item.state = QUEUED
        self.queued += 1
        self.added += 1
        heap = self._heap
        heapq.heappush(heap, (item.deadline, next(self._seq), item))
        if len(heap) > 2 * self.queued + 1024:
            self._compact()
        return queue

    def tighten(self, item: Item, deadline: float) -> None:
        """A caller joined `item` (dedup) with an earlier deadline."""
        if item.state == QUEUED and deadline < item.deadline:
            item.deadline = deadline
            heapq.heappush(self._heap, (deadline, next(self._seq), item))

    def remove(self, item: Item) -> bool:
        """Take a queued item out (its last caller left). False if it is no longer queued."""
        if item.state != QUEUED:
            return False
        self._unqueue(item)
        item.state = REMOVED
        return True

    # -- decisions ------------------------------------------------------------------------------------------

    def ready_at(self, queue: KeyQueue) -> float:
        """When `queue` may be flushed into a free slot (deadlines aside)."""
        if self.draining or queue.count >= self.cap or queue.bytes >= self.max_bytes or queue.cost >= self.max_cost:
            return -INF
        front = queue.front()
        return self._held_until(queue, front) if front is not None else INF

    def lead(self) -> float:
        """How long before an item's deadline its queue must go: the predicted tail time of a full batch and the
        scheduling margin; with an untrusted prediction, the hold too (a cold route knows nothing of its
        upstream: without this, a caller whose budget is shorter than the hold would be held until a
        millisecond before its deadline, and time out however fast the upstream is)."""
        lead = self.tail(self.cap) + self.margin
        if self.trusted is not None and not self.trusted():
            lead += self.hold
        return lead

    def trigger_at(self, item: Item) -> float:
        """The latest time to flush `item` for it to finish before its deadline."""
        return item.deadline - self.lead()

    def expire_at(self, item: Item) -> float:
        """The time after which even a batch of one cannot finish `item` before its deadline."""
        return item.deadline - self.expected(1)

    def expire(self, now: float) -> list[Waiter]:
        """Callers of queued items that cannot make their deadline any more; items left without callers are
        removed."""
        heap = self._heap
        lead = self.expected(1)
        expired: list[Waiter] = []
        while heap and heap[0][0] - lead <= now:
            deadline, _, item = heapq.heappop(heap)
            if item.state != QUEUED or deadline != item.deadline:
                continue
            keep = self._split_late(item, now, lead, expired)
            if keep:
                item.deadline = min(w.deadline for w in keep)
                heapq.heappush(heap, (item.deadline, next(self._seq), item))
            else:
                self.remove(item)
        return expired

    def drain_ready(self, now: float, limit: int) -> tuple[list[Batch], list[Waiter]]:
        """Seal up to `limit` ready batches (one per free in-flight slot). Also returns the callers of items met
        on the way that can no longer make their deadline."""
        batches: list[Batch] = []
        expired: list[Waiter] = []
        if limit <= 0 or not self.queued:
            return batches, expired
        urgent = self._urgent(now)
        while limit > 0 and self.queued:
            best, best_reason = self._select(now, urgent)
            if best is None:
                break
            batch = self._take(best, best_reason, now, expired)
            if batch is not None:
                batches.append(batch)
                limit -= 1
                if self.fair is not None:
                    tenant = self.fair.tenant(batch.key)
                    emptied = not any(self.fair.tenant(key) == tenant for key in self.queues)
                    self.fair.charge(tenant, len(batch.items), emptied)
        for items in urgent.values():
            for item in items:
                if item.state == QUEUED:
                    heapq.heappush(self._heap, (item.deadline, next(self._seq), item))
        return batches, expired

    def next_deadline(self, slots_free: bool) -> float | None:
        """When the shell should look again: with a free slot, the first time a queue becomes ready or an item
        must go for its deadline; without one, the first time a queued caller expires. None if nothing waits."""
        if not self.queued:
            return None
        heap = self._heap
        while heap and (heap[0][2].state != QUEUED or heap[0][0] != heap[0][2].deadline):
            heapq.heappop(heap)
        if not slots_free:
            return heap[0][0] - self.expected(1) if heap else None
        when = heap[0][0] - self.lead() if heap else INF
        for queue in self.queues.values():
            when = min(when, self.ready_at(queue))
        return when

    def items(self) -> list[Item]:
        """Every queued item (for drain and inspection)."""
        return [item for queue in self.queues.values() for lane in queue.lanes for item in lane
                if item.state == QUEUED]

    # -- internals ------------------------------------------------------------------------------------------

    def _select(self, now: float, urgent: dict[Key, list[Item]]) -> tuple[KeyQueue | None, str]:
        """The queue to flush next and why: the highest priority, then an urgent deadline, then the oldest front
        (or, with fairness, the key whose turn it is among the queues of that priority and urgency)."""
        best: KeyQueue | None = None
        best_rank: tuple[int, int, float] | None = None
        best_reason = ""
        fair = self.fair
        ready: list[tuple[tuple[int, int, float], KeyQueue, str]] = []
        for queue in self.queues.values():
            is_urgent = queue.key in urgent and any(i.state == QUEUED for i in urgent[queue.key])
            reason = self._reason(queue, now, is_urgent)
            if reason is None:
                continue
            front = queue.front()
            assert front is not None
            rank = (queue.best_lane(), 0 if is_urgent else 1, front.arrived)
            if fair is not None:
                ready.append((rank, queue, reason))
            if best_rank is None or rank < best_rank:
                best, best_rank, best_reason = queue, rank, reason
        if fair is None or best_rank is None:
            return best, best_reason
        tier = best_rank[:2]
        by_key: dict[Key, tuple[tuple[int, int, float], KeyQueue, str]] = {}
        for entry in ready:
            if entry[0][:2] == tier:
                tenant = fair.tenant(entry[1].key)
                held = by_key.get(tenant)
                if held is None or entry[0] < held[0]:
                    by_key[tenant] = entry
        sizes = {tenant: min(entry[1].count, self.cap) for tenant, entry in by_key.items()}
        turn = fair.pick(sizes, {fair.tenant(key) for key in self.queues})
        _, queue, reason = by_key[turn]
        return queue, reason

    def _reason(self, queue: KeyQueue, now: float, is_urgent: bool) -> str | None:
        if not queue.count:
            return None
        if self.draining:
            return "drain"
        if queue.count >= self.cap:
            return "items"
        if queue.bytes >= self.max_bytes:
            return "bytes"
        if queue.cost >= self.max_cost:
            return "cost"
        if is_urgent:
            return "deadline"
        front = queue.front()
        if front is not None and self._held_until(queue, front) <= now:
            return "wait"
        return None

    def _held_until(self, queue: KeyQueue, front: Item) -> float:
        """When the hold of `queue`, whose oldest item is `front`, ends."""
        until = front.arrived + min(self.hold, queue.hold_bound)
        preferred = self.preferred
        if preferred is not None and preferred.short(queue.count):
            until = max(until, front.arrived + preferred.max_wait)
        return until

    def _urgent(self, now: float) -> dict[Key, list[Item]]:
        """Pop the heap entries whose flush trigger has passed; `drain_ready` pushes back those left queued."""
        heap = self._heap
        lead = self.lead()
        urgent: dict[Key, list[Item]] = {}
        while heap and heap[0][0] - lead <= now:
            deadline, _, item = heapq.heappop(heap)
            if item.state == QUEUED and deadline == item.deadline:
                urgent.setdefault(item.key, []).append(item)
        return urgent

    def _take(self, queue: KeyQueue, reason: str, now: float, expired: list[Waiter]) -> Batch | None:
        cap, max_bytes, max_cost, preferred = self.cap, self.max_bytes, self.max_cost, self.preferred
        if preferred is not None and reason == "wait":
            cap = preferred.cut(queue.count, cap)
        lead = self.expected(min(queue.count, cap))
        members: list[Item] = []
        size = taken = 0
        cost = 0.0
        full = False
        for lane in queue.lanes:
            while lane:
                item = lane[0]
                if item.state != QUEUED:
                    lane.popleft()
                    continue
                if len(members) >= cap or (members and (size + item.size > max_bytes
                                                        or cost + item.cost > max_cost)):
                    full = True
                    break
                lane.popleft()
                taken += 1
                queue.bytes -= item.size
                queue.cost -= item.cost
                item.queue = None
                if item.deadline - lead <= now:
                    keep = self._split_late(item, now, lead, expired)
                    if not keep:
                        item.state = REMOVED
                        continue
                    item.deadline = min(w.deadline for w in keep)
                members.append(item)
                size += item.size
                cost += item.cost
            if full:
                break
        queue.count -= taken
        self.queued -= taken
        if not queue.count and self.queues.get(queue.key) is queue:
            del self.queues[queue.key]
        if not members:
            return None
        batch = Batch(self._new_id(), queue.key, now)
        if preferred is not None:
            padding = preferred.padding(members, queue.key, now)
            batch.padding = len(padding)
            members.extend(padding)
        batch.fill(members)
        batch.seal(reason, now)
        return batch

    @staticmethod
    def _split_late(item: Item, now: float, lead: float, expired: list[Waiter]) -> list[Waiter]:
        """Move the callers of `item` who cannot finish in time (deadline - lead <= now) to `expired`; return
        the others."""
        if not item.waiters:
            return []
        keep: list[Waiter] = []
        for waiter in item.waiters:
            (expired if waiter.deadline - lead <= now else keep).append(waiter)
        item.waiters = keep
        return keep

    def _unqueue(self, item: Item) -> None:
        queue = item.queue
        assert queue is not None
        queue.count -= 1
        queue.bytes -= item.size
        queue.cost -= item.cost
        self.queued -= 1
        item.queue = None
        if not queue.count and self.queues.get(queue.key) is queue:
            del self.queues[queue.key]

    def _compact(self) -> None:
        self._heap = [(item.deadline, next(self._seq), item) for item in self.items()]
        heapq.heapify(self._heap)


__all__ = ["Accumulator"]
