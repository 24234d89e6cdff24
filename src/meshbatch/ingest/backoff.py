"""Jittered exponential backoff: attempt n waits between half and all of min(max, initial * 2^(n-1))."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    initial: float
    maximum: float
    rng: random.Random = field(default_factory=random.Random)

    def ceiling(self, attempt: int) -> float:
        return min(self.maximum, self.initial * 2.0 ** min(max(attempt, 1) - 1, 60))

    def delay(self, attempt: int) -> float:
        cap = self.ceiling(attempt)
        return cap / 2 + self.rng.random() * cap / 2


__all__ = ["Backoff"]
