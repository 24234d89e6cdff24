"""How long the upstream takes for a batch of n items, learnt online from recent batches.

A least-squares fit of t(n) = a + b*n over the last `window` successful batches, refitted every few batches,
with the tail kept separately: `tail(n)` adds a high quantile of the residuals to the fit, so one slow batch in
a hundred moves the prediction and the mean alone never hides the tail. With too few samples or no spread in
batch sizes the fit falls back to a constant (b = 0) at the mean; a and b are kept non-negative.
"""

from __future__ import annotations

import math
from collections import deque

MIN_SAMPLES = 8


class LatencyModel:
    __slots__ = ("_samples", "_since", "a", "b", "fits", "quantile", "residual")

    def __init__(self, window: int = 256, quantile: float = 0.99) -> None:
        if window < 2:
            raise ValueError("window must be >= 2")
        if not 0.5 <= quantile < 1:
            raise ValueError("quantile must be in [0.5, 1)")
        self._samples: deque[tuple[int, float]] = deque(maxlen=window)
        self._since = 0
        self.quantile = quantile
        self.a = 0.0  # fixed cost of a batch, seconds
        self.b = 0.0  # cost per item, seconds
        self.residual = 0.0  # the `quantile` of (observed - fitted), seconds, >= 0
        self.fits = 0

    @property
    def samples(self) -> int:
        return len(self._samples)

    @property
    def ready(self) -> bool:
        return len(self._samples) >= MIN_SAMPLES

    def observe(self, n: int, seconds: float) -> None:
        if n < 1 or not math.isfinite(seconds) or seconds < 0:
            return
        self._samples.append((n, seconds))
        self._since += 1
        count = len(self._samples)
        if self._since >= (1 if count < MIN_SAMPLES else min(16, max(1, count // 8))):
            self.refit()

    def refit(self) -> None:
        self._since = 0
        samples = self._samples
        count = len(samples)
        if not count:
            return
        sum_n = sum_t = sum_nn = sum_nt = 0.0
        for n, t in samples:
            sum_n += n
            sum_t += t
            sum_nn += n * n
            sum_nt += n * t
        mean_n, mean_t = sum_n / count, sum_t / count
        var_n = sum_nn / count - mean_n * mean_n
        if var_n <= 1e-9 * max(1.0, mean_n * mean_n):
            a, b = mean_t, 0.0
        else:
            b = (sum_nt / count - mean_n * mean_t) / var_n
            a = mean_t - b * mean_n
            if b < 0:
                a, b = mean_t, 0.0
            elif a < 0:
                a, b = 0.0, sum_nt / sum_nn
        residuals = sorted(t - (a + b * n) for n, t in samples)
        rank = max(0, math.ceil(self.quantile * count) - 1)
        self.a, self.b = a, b
        self.residual = max(0.0, residuals[rank])
        self.fits += 1

    def expected(self, n: int) -> float:
        """The typical time of a batch of n items (0 before any sample)."""
        return self.a + self.b * n

    def tail(self, n: int) -> float:
        """The time a batch of n items stays under with probability `quantile`."""
        return self.a + self.b * n + self.residual

    def mean_size(self) -> float:
        return sum(n for n, _ in self._samples) / len(self._samples) if self._samples else 0.0

    def summary(self) -> dict[str, object]:
        return {
            "samples": len(self._samples),
            "fixed_ms": round(self.a * 1000, 4),
            "per_item_ms": round(self.b * 1000, 5),
            f"residual_p{round(self.quantile * 100)}_ms": round(self.residual * 1000, 4),
            "mean_batch_size": round(self.mean_size(), 2),
        }


__all__ = ["MIN_SAMPLES", "LatencyModel"]
