"""Weighted fair sharing of the in-flight slots between batch keys (`batch.fairness`): deficit round robin.

Without it, when several keys' queues are ready and slots are few, the oldest queue goes first: a tenant that
floods keeps the oldest items and takes every slot, and a quiet tenant's item waits behind the whole backlog.
With it, the keys take turns. Each key with items queued has a place in a ring and a deficit (in items). The key
at the head of the ring sends its ready batch while its deficit covers the batch's size (the deficit drops by
that size); when it does not, the key is credited its quantum (`max_items` x its weight) and goes to the back of
the ring. A key left with nothing queued, once served or cancelled, leaves the ring and its deficit (deficit
round robin, Shreedhar and Varghese 1995). So over a round every key with a ready queue sends about weight x
max_items items, and a quiet key waits at most one round, however deep a flooding key's backlog is. Weights
come from glob patterns over the key's values joined with "/" (`tenant-a*`: 2), the first matching pattern
wins, `default_weight` otherwise.

Strict priorities and deadlines still come first (batching/accumulator.py): fairness orders the keys among
queues of the same priority and urgency. Pure: no clock, no I/O.
"""

from __future__ import annotations

from collections import OrderedDict
from fnmatch import fnmatchcase
from itertools import islice
from math import ceil

from meshbatch.batching.batch import Key


class FairShare:
    __slots__ = ("_weights", "default_weight", "parts", "patterns", "quantum", "ring")

    def __init__(self, patterns: dict[str, float], default_weight: float, quantum: int, parts: int) -> None:
        self.patterns = list(patterns.items())
        self.default_weight = default_weight
        self.quantum = quantum  # items per unit of weight and turn (max_items)
        self.parts = parts  # the batch key's parts: a queue key may carry more (its shape bucket)
        self.ring: OrderedDict[Key, float] = OrderedDict()  # key -> deficit (items), in turn order
        self._weights: dict[Key, float] = {}

    def tenant(self, queue_key: Key) -> Key:
        """The batch key a queue belongs to (its shape bucket aside)."""
        return queue_key[:self.parts]

    def weight(self, key: Key) -> float:
        weight = self._weights.get(key)
        if weight is None:
            name = "/".join(part.decode("latin-1") for part in key)
            weight = next((w for pattern, w in self.patterns if fnmatchcase(name, pattern)), self.default_weight)
            if len(self._weights) > 65_536:  # keys are caller-chosen: keep the cache bounded
                self._weights.clear()
            self._weights[key] = weight
        return weight

    def pick(self, ready: dict[Key, int], queued: set[Key]) -> Key:
        """The key whose turn it is among `ready` (key -> size of the batch it would send, > 0); `queued` holds
        every key with items queued (the others leave the ring). `charge` then takes the batch's size off its
        deficit."""
        ring = self.ring
        for key in list(ring):
            if key not in queued:
                del ring[key]
        for key in ready:
            if key not in ring:
                ring[key] = 0.0
        # the whole rounds in which no ready key could send yet, credited at once (light weights would otherwise
        # spin the ring up to 1/weight times per batch)
        idle = min(ceil((need - ring[key]) / (self.quantum * self.weight(key))) for key, need in ready.items()) - 1
        if idle > 0:
            for key in ready:
                ring[key] += idle * self.quantum * self.weight(key)
        while True:
            key, deficit = next(iter(ring.items()))
            need = ready.get(key)
            if need is not None:
                if deficit >= need:
                    return key
                ring[key] = deficit + self.quantum * self.weight(key)
            ring.move_to_end(key)

    def charge(self, key: Key, items: int, emptied: bool) -> None:
        """`key` sent a batch of `items`; `emptied`: it has nothing queued any more, so its turn ends and it
        leaves the ring with its deficit (when it queues again it joins at the back)."""
        if emptied:
            self.ring.pop(key, None)
        elif key in self.ring:
            self.ring[key] = max(0.0, self.ring[key] - items)

    def summary(self, limit: int = 50) -> dict[str, object]:
        return {"weights": dict(self.patterns), "default_weight": self.default_weight, "quantum_items": self.quantum,
                "turns": [{"key": [part.decode("latin-1") for part in key], "weight": self.weight(key),
                           "deficit": round(deficit, 3)} for key, deficit in islice(self.ring.items(), limit)],
                "keys_in_turn": len(self.ring)}

    def __repr__(self) -> str:
        return f"<FairShare {len(self.ring)} keys>"


__all__ = ["FairShare"]
