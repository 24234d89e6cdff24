"""The upstream work of the `batching` scenario, shared by every system that serves it.

The same module runs inside `batch_upstream.py` (the HTTP upstream behind meshbatch, and the `direct` target)
and inside the Ray Serve and BentoML services of `peers_batching/`, so every system does exactly the same work
per batch. Standard library plus NumPy (NumPy only for the `cpu` model); no other imports, so the peers'
virtual environments need nothing else.

Two models of a batch-friendly upstream, each with ONE worker (calls run one at a time, in arrival order):

- `fixed`: a fixed cost per call plus a cost per item (default 2 ms + 20 us/item). The cost is *waited* (a timer
  sleep to just before the end, then the event loop is polled to the exact end), not burnt: it stands for work
  done elsewhere (a GPU, a database), so its figures do not depend on how much CPU the serving stack leaves.
- `cpu`: a real computation on the worker's own core. Each item is a vector of 64 floats; a batch of n items is
  one NumPy product (n x 64) @ (64 x 4096) with a fixed float32 matrix (one BLAS thread), and each item's answer
  is the index and value of its largest output. One item alone pays NumPy's and Python's per-call overhead and
  streams the whole matrix; a batch pays that once.

A batch's *service time* is measured around the work alone (lock wait excluded), and every call's size and
service time are kept for `stats()`.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from typing import Any

MODELS = ("fixed", "cpu")
SPIN = 0.0002  # `fixed`: wake this early from the timer and poll the loop until the end of the call
DIM_IN = 64
DIM_OUT = 4096  # the default; `--cpu-dim`
SEED = 20261124


def sample_vector(seed: int = 7) -> list[float]:
    """The 64 floats of the `cpu` model's request item (deterministic, 4 decimals)."""
    values: list[float] = []
    state = seed
    for _ in range(DIM_IN):
        state = (state * 1103515245 + 12345) % 2**31
        values.append(round(state / 2**31 * 2 - 1, 4))
    return values


def percentiles(values: list[float]) -> dict[str, float | None]:
    """Nearest-rank p50 / p99 / max / mean of seconds, in milliseconds."""
    if not values:
        return {"p50": None, "p99": None, "max": None, "mean": None}
    ordered = sorted(values)

    def pick(q: float) -> float:
        rank = max(1, math.ceil(q / 100 * len(ordered)))
        return round(ordered[rank - 1] * 1000, 4)

    return {"p50": pick(50), "p99": pick(99), "max": pick(100), "mean": round(sum(ordered) / len(ordered) * 1000, 4)}


class Work:
    """One worker: a FIFO lock, the model, and the per-call measurements."""

    def __init__(self, model: str = "fixed", base_ms: float = 2.0, per_item_us: float = 20.0, dim_out: int = DIM_OUT):
        if model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}: {model}")
        self.model = model
        self.base = base_ms / 1000
        self.per_item = per_item_us / 1e6
        self.lock = asyncio.Lock()
        self.dim_out = dim_out
        self.matrix: Any = None
        if model == "cpu":
            import numpy as np

            self.matrix = np.random.default_rng(SEED).standard_normal((DIM_IN, dim_out)).astype(np.float32)
        self.reset()

    def reset(self) -> None:
        self.calls = 0
        self.items = 0
        self.sizes: Counter[int] = Counter()
        self.service: list[float] = []
        self.lock_wait: list[float] = []

    async def run(self, items: list[Any]) -> list[Any]:
        """Serve one call of `items` (a batch, or a list of one); the results in the same order."""
        queued = time.perf_counter()
        async with self.lock:
            start = time.perf_counter()
            if self.model == "fixed":
                end = start + self.base + self.per_item * len(items)
                if end - start > SPIN:
                    await asyncio.sleep(end - start - SPIN)
                while time.perf_counter() < end:
                    await asyncio.sleep(0)
                results = [_ack(item) for item in items]
            else:
                results = self._product(items)
            done = time.perf_counter()
        self.calls += 1
        self.items += len(items)
        self.sizes[len(items)] += 1
        self.service.append(done - start)
        self.lock_wait.append(start - queued)
        return results

    def _product(self, items: list[Any]) -> list[Any]:
        import numpy as np

        vectors = np.asarray([item["x"] for item in items], dtype=np.float32)
        out = vectors @ self.matrix
        best = out.argmax(axis=1)
        top = out[np.arange(len(items)), best]
        return [
            {"id": item.get("id"), "argmax": int(b), "max": round(float(v), 3)}
            for item, b, v in zip(items, best.tolist(), top.tolist(), strict=True)
        ]

    def stats(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "base_ms": self.base * 1000,
            "per_item_us": self.per_item * 1e6,
            "dim_out": self.dim_out,
            "calls": self.calls,
            "items": self.items,
            "sizes": {str(size): count for size, count in sorted(self.sizes.items())},
            "service_ms": percentiles(self.service),
            "lock_wait_ms": percentiles(self.lock_wait),
        }


def _ack(item: Any) -> Any:
    return {"ok": True, "id": item.get("id") if isinstance(item, dict) else None}


def from_env(environ: Any) -> Work:
    """A `Work` configured by the MESHBATCH_BENCH_* variables the harness sets for the peers' services."""
    return Work(
        environ.get("MESHBATCH_BENCH_MODEL", "fixed"),
        float(environ.get("MESHBATCH_BENCH_BASE_MS", "2")),
        float(environ.get("MESHBATCH_BENCH_PER_ITEM_US", "20")),
        int(environ.get("MESHBATCH_BENCH_CPU_DIM", str(DIM_OUT))),
    )
