"""A batch recorder's document (`GET /recorder?route=NAME`) made up for `tune`'s tests: Poisson arrivals batched as
the upstream frees up, its time a + b*n plus a little noise."""

from __future__ import annotations

import random
from typing import Any


def recorded(rate: float = 2000.0, seconds: float = 2.0, fixed: float = 0.004, per_item: float = 0.0002,
             max_items: int = 64) -> dict[str, Any]:
    """A recorder document as a proxy would serve it: Poisson arrivals batched as the upstream frees up."""
    rng = random.Random(3)
    t, arrivals = 0.0, []
    while t < seconds:
        t += rng.expovariate(rate)
        arrivals.append(t)
    batches, free_at, i = [], 0.0, 0
    while i < len(arrivals):
        start = max(free_at, arrivals[i])
        members = [a for a in arrivals[i:i + max_items] if a <= start]
        i += len(members)
        done = start + fixed + per_item * len(members) + rng.uniform(0, 0.0005)
        batches.append({"sent": start, "done": done, "ok": True, "flush": "wait", "arrivals": members})
        free_at = done
    return {"route": "orders", "recording": True, "batches": batches,
            "policy": {"max_items": max_items, "min_wait_ms": 0.0, "max_wait_ms": 5.0, "max_in_flight": 1,
                       "timeout_ms": 2000.0, "adaptive": False}}


__all__ = ["recorded"]
