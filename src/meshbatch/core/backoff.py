"""Fully jittered exponential backoff (as Envoy's router and the AWS architecture note describe it).

Retry n (0 for the first retry) waits a uniformly random time in [0, min(cap, base * 2^n)]: the expected wait
doubles per retry, and callers that failed together do not retry together. One backoff for the whole proxy: a
route's retries (layers/retry.py), a batch's item retries (batching/retry.py) and ingest deliveries (an event
that failed, and a sink that cannot be reached) all wait this way. `retry` is the decision each of them makes:
whether a retry is left, and how long to wait before it. The random source is injected (tests pass a fixed one);
pure.
"""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    __slots__ = ("_random", "base", "cap")

    def __init__(self, base: float, cap: float, rng: Callable[[], float] | None = None) -> None:
        if base <= 0 or cap < base:
            raise ValueError("backoff needs 0 < base <= cap")
        self.base = base
        self.cap = cap
        self._random = rng or random.random

    @classmethod
    def from_ms(cls, base_ms: float, max_ms: float | None, rng: Callable[[], float] | None = None) -> Backoff:
        """From milliseconds, as the config writes them; no `max_ms`: ten times the base."""
        base = base_ms / 1000
        return cls(base, max_ms / 1000 if max_ms is not None else base * 10, rng)

    def ceiling(self, retry: int) -> float:
        """The longest wait before retry number `retry` (0-based; a negative number counts as 0)."""
        return min(self.cap, self.base * (1 << min(max(retry, 0), 30)))

    def delay(self, retry: int) -> float:
        return self._random() * self.ceiling(retry)

    def retry(self, retry: int, retries: int) -> float | None:
        """The one retry decision: the wait before retry number `retry` (0-based) when it is one of the
        `retries` allowed, else None (the tries are spent: give up, or park the work)."""
        if retry >= retries:
            return None
        return self.delay(retry)

    def __repr__(self) -> str:
        return f"<Backoff base={self.base * 1000:g}ms cap={self.cap * 1000:g}ms>"


__all__ = ["Backoff"]
