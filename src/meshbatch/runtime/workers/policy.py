"""When a worker that died is started again: a bounded exponential backoff per worker. Pure (times are given).

A worker that exits on its own (a crash, an out-of-memory kill, a `kill -9`) while the supervisor is not draining is
started again after `delay`: `base` after its first quick death, doubling for each death that follows within
`stable` seconds of its start, never more than `cap`. A worker that ran for `stable` seconds or more starts again
after `base` (its earlier deaths are forgiven): a worker crash-looping on a broken config file costs a start every
`cap` seconds, not a busy loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from meshbatch.core.backoff import Backoff


@dataclass(slots=True)
class RestartPolicy:
    base: float = 0.1
    cap: float = 10.0
    stable: float = 30.0
    _quick_deaths: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0 < self.base <= self.cap or self.stable <= 0:
            raise ValueError("restart policy needs 0 < base <= cap and stable > 0")

    def delay(self, worker: int, started_at: float, died_at: float) -> float:
        """Seconds to wait before worker `worker` (started at `started_at`, dead at `died_at`) starts again."""
        quick = self._quick_deaths.get(worker, 0) if died_at - started_at < self.stable else 0
        self._quick_deaths[worker] = quick + 1
        return Backoff(self.base, self.cap).ceiling(quick)  # no jitter: one supervisor, its own workers

    def deaths(self, worker: int) -> int:
        """Deaths in a row of `worker`, each within `stable` seconds of its start (0: none)."""
        return self._quick_deaths.get(worker, 0)


__all__ = ["RestartPolicy"]
