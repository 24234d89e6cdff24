"""Fully jittered exponential backoff (as Envoy's router and the AWS architecture note describe it).

Retry n (0 for the first retry) waits a uniformly random time in [0, min(cap, base * 2^n)]: the expected wait
doubles per retry, and callers that failed together do not retry together.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from meshbatch.config.model import Backoff as BackoffConfig


class Backoff:
    __slots__ = ("_random", "base", "cap")

    def __init__(self, base: float, cap: float, rng: Callable[[], float] | None = None) -> None:
        if base <= 0 or cap < base:
            raise ValueError("backoff needs 0 < base <= cap")
        self.base = base
        self.cap = cap
        self._random = rng or random.random

    @classmethod
    def from_config(cls, config: BackoffConfig, rng: Callable[[], float] | None = None) -> Backoff:
        base = config.base_ms / 1000
        cap = config.max_ms / 1000 if config.max_ms is not None else base * 10
        return cls(base, cap, rng)

    def ceiling(self, retry: int) -> float:
        """The longest wait before retry number `retry` (0-based)."""
        return min(self.cap, self.base * (1 << min(retry, 30)))

    def delay(self, retry: int) -> float:
        return self._random() * self.ceiling(retry)

    def __repr__(self) -> str:
        return f"<Backoff base={self.base * 1000:g}ms cap={self.cap * 1000:g}ms>"


__all__ = ["Backoff"]
