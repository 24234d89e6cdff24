"""`batch.adaptive` in its run-time form: the adaptive hold or a canary's candidate
(meshbatch.config.model.adaptive)."""

from __future__ import annotations

from meshbatch.config.plain.base import Plain


class Candidate(Plain, frozen=True, kw_only=True):
    """`batch.adaptive.candidate`: the setting a canary tries (what `meshbatch tune` recommends); a key left out
    keeps the route's own value."""

    max_items: int | None = None
    min_wait_ms: float | None = None
    max_wait_ms: float | None = None
    max_in_flight: int | None = None


class Sweep(Plain, frozen=True, kw_only=True):
    """`batch.adaptive.sweep`: with a canary and no `candidate`, the proxy finds the setting to try itself: once the
    route's batch recorder holds enough traffic, `meshbatch tune`'s sweep runs in a separate process on it."""

    min_arrivals: int = 2000
    min_batches: int = 50
    timeout_ms: float = 30000.0
    memory_mb: int = 1024
    retry_ms: float | None = None


class Adaptive(Plain, frozen=True, kw_only=True):
    """`batch.adaptive`: the hold and size cap moved by a p99 target (`target_p99_ms`), or a canary that tries a
    candidate setting on a share of the batches and promotes or rolls it back by itself (batching/canary.py)."""

    target_p99_ms: float | None = None
    window: int = 256
    canary: float | None = None
    candidate: Candidate | None = None
    sweep: Sweep | None = None
    window_ms: float = 10000.0
    min_batches: int = 20
    max_p99_increase_percent: float = 10.0
    p99_slack_ms: float = 1.0
    min_cost_decrease_percent: float = 0.0
    max_error_increase_percent: float = 1.0
    min_failed_batches: int = 3
    passes: int = 2
    failures: int = 2
    max_windows: int = 10
    decisions_kept: int = 20
