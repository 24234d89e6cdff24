"""The retry budget of a cluster: how many retries may be sent, given the requests sent (sans-I/O).

Two limits, both must allow a retry:
- in flight (Envoy's retry budget): retries in flight upstream stay below max(min_retry_concurrency,
  budget_percent of the requests in flight to the cluster), which stops bursts of retries (a retry still
  waiting out its backoff puts no load on the upstream and is not counted);
- over a window (Linkerd's): the retries of the last `window` stay within budget_percent of the first
  attempts of that window plus min_retries_per_second x window, which bounds the amplification
  (attempts / requests) to about 1 + budget_percent / 100 under sustained failure.

Amounts are units: one per plain request, one per item of a batch (a batch retry of k items costs k).
"""

from __future__ import annotations

from math import floor

from meshbatch.config.plain import RetryBudget as BudgetConfig


class SlidingCount:
    """A sum over the last `window` seconds, kept in `slots` buckets; every call takes `now`."""

    __slots__ = ("_counts", "_epochs", "_slot")

    def __init__(self, window: float, slots: int = 10) -> None:
        if window <= 0 or slots < 1:
            raise ValueError("a sliding count needs a positive window and at least one slot")
        self._slot = window / slots
        self._counts = [0.0] * slots
        self._epochs = [-1] * slots

    def add(self, now: float, amount: float = 1.0) -> None:
        epoch = int(now // self._slot)
        i = epoch % len(self._counts)
        if self._epochs[i] != epoch:
            self._epochs[i] = epoch
            self._counts[i] = 0.0
        self._counts[i] += amount

    def total(self, now: float) -> float:
        epoch = int(now // self._slot)
        oldest = epoch - len(self._counts)
        return sum(c for c, e in zip(self._counts, self._epochs, strict=True) if oldest < e <= epoch)


class RetryBudget:
    __slots__ = ("active", "config", "percent", "requests", "retries", "window")

    def __init__(self, config: BudgetConfig) -> None:
        self.config = config
        self.percent = config.budget_percent / 100
        self.window = config.window_ms / 1000
        self.requests = SlidingCount(self.window)
        self.retries = SlidingCount(self.window)
        self.active = 0  # retries in flight upstream (sent, not answered yet)

    def deposit(self, now: float, units: float = 1.0) -> None:
        """First attempts: each earns budget_percent of a retry."""
        self.requests.add(now, units)

    def available(self, now: float, in_flight: int) -> int:
        """How many units of retry the budget allows now (0 when the in-flight limit is reached)."""
        config = self.config
        if self.active >= max(config.min_retry_concurrency, self.percent * in_flight):
            return 0
        allowance = (self.percent * self.requests.total(now) + config.min_retries_per_second * self.window
                     - self.retries.total(now))
        return max(0, floor(allowance + 1e-9))

    def withdraw(self, now: float, units: float = 1.0) -> None:
        """A retry decided: count its units against the window."""
        self.retries.add(now, units)

    def begin(self) -> None:
        """A retry is sent: it holds an in-flight place until `end`."""
        self.active += 1

    def end(self) -> None:
        self.active -= 1

    def __repr__(self) -> str:
        return f"<RetryBudget {self.config.budget_percent:g}% active={self.active}>"


__all__ = ["RetryBudget", "SlidingCount"]
