"""The search for a canary's candidate (`batch.adaptive: {canary: SHARE}` with no `candidate`): when to sweep the
recorded traffic, and what to do with what the sweep recommends.

A pure core on the batcher's clock, like the canary it feeds (batching/canary.py). The sweep itself (`meshbatch
tune`'s replay of the batch recorder's traffic) runs elsewhere, in a process of its own started by the runtime
(runtime/autocanary.py); this core only says when one is due and takes its outcome:

- `due(now, held)`: is a sweep due now, given what the recorder holds? Not while a sweep or a canary runs, not
  before `next_at`, and not before the recorder holds `min_arrivals` arrivals and `min_batches` batches, of which
  `min_batches` recorded since the last sweep (an idle route is not swept again on the same record). Otherwise the
  state says why: `waiting_for_data` (with the counts, and `recorder_off` or `recorder_too_small` when the record
  can never get there), `waiting` (a later sweep is planned), `backoff` (the last sweep failed);
- `on_result(now, candidate, detail)`: the sweep recommended `candidate` (None: no better setting than the
  route's own). A candidate is returned to be tried by a canary, unless it was rolled back before; otherwise a
  `keep` decision, reason `no_better_setting`, and the next sweep after `retry`;
- `on_failure(now, what)`: the sweep crashed, hung or answered nonsense: the next one after a backoff doubling
  from `backoff` up to `retry`;
- `on_final(now, decision, candidate)`: the canary it started promoted or rolled back its candidate; a rolled back
  candidate is never tried again; the next sweep after `retry`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from meshbatch.batching.canary import BatchSetting, CanaryDecision
from meshbatch.core.backoff import Backoff

WAITING_FOR_DATA, SWEEPING, TRYING, WAITING, BACKOFF = "waiting_for_data", "sweeping", "trying", "waiting", "backoff"
NO_BETTER = "no_better_setting"


@dataclass(frozen=True, slots=True)
class SearchRules:
    min_arrivals: int = 2_000
    min_batches: int = 50
    retry: float = 100.0  # seconds: after a sweep that found nothing better, a promotion or a rollback
    backoff: float = 10.0  # seconds: after the first failed sweep (then doubled, up to max(retry, backoff))
    timeout: float = 30.0  # seconds a sweep may take (the runtime kills it then)
    memory_mb: int = 1_024

    def __post_init__(self) -> None:
        if self.min_arrivals < 2 or self.min_batches < 2 or self.retry <= 0 or self.backoff <= 0:
            raise ValueError("min_arrivals and min_batches >= 2, retry and backoff > 0")


@dataclass(frozen=True, slots=True)
class Holdings:
    """What the route's batch recorder holds now."""

    recording: bool
    arrivals: int = 0  # item arrivals held
    batches: int = 0  # batches held
    recorded: int = 0  # batches recorded since the recorder started (grows)
    capacity: int = 0  # the most arrivals it keeps (recorder.max_items)


@dataclass(slots=True)
class CanarySearch:
    rules: SearchRules
    state: str = WAITING_FOR_DATA
    why: str = ""  # of the state, for /batchers
    next_at: float = 0.0  # on the batcher's clock: no sweep before
    sweeps: int = 0  # started
    failures: int = 0  # in a row (the backoff's exponent)
    failed: int = 0  # since the start
    held: Holdings = field(default_factory=lambda: Holdings(recording=False))
    swept_recorded: int = 0  # the recorder's `recorded` at the last sweep's start
    started_at: float = 0.0
    rejected: set[BatchSetting] = field(default_factory=set)  # candidates rolled back: never tried again
    last: str = ""  # what the last sweep found, for /batchers

    def due(self, now: float, held: Holdings) -> bool:
        if self.state in (SWEEPING, TRYING):
            return False
        self.held = held
        if now < self.next_at:
            return False
        rules = self.rules
        if held.recorded < self.swept_recorded:
            self.swept_recorded = 0  # a new recorder (its size changed on a reload): its record is all new
        fresh = held.recorded - self.swept_recorded
        if not held.recording:
            return self._wait("recorder_off: the batch recorder is off (recorder.max_items: 0); nothing to sweep")
        if held.capacity < rules.min_arrivals:
            return self._wait(f"recorder_too_small: the recorder keeps {held.capacity} arrivals "
                              f"(recorder.max_items) < min_arrivals {rules.min_arrivals}")
        if held.arrivals < rules.min_arrivals or held.batches < rules.min_batches or fresh < rules.min_batches:
            return self._wait(f"{held.arrivals} of {rules.min_arrivals} arrivals, {held.batches} of "
                              f"{rules.min_batches} batches recorded ({fresh} since the last sweep)")
        self.state, self.why = SWEEPING, f"sweep {self.sweeps + 1} of {held.arrivals} arrivals, {held.batches} batches"
        self.sweeps += 1
        self.swept_recorded = held.recorded
        self.started_at = now
        return True

    def _wait(self, why: str) -> bool:
        self.state, self.why = WAITING_FOR_DATA, why
        return False

    def on_result(self, now: float, candidate: BatchSetting | None, detail: str) -> BatchSetting | CanaryDecision:
        """The sweep's outcome: the candidate to try (the state is `trying`), or a `keep` decision to record."""
        self.failures = 0
        self.last = detail
        if candidate is not None and candidate not in self.rejected:
            self.state, self.why = TRYING, f"trying the sweep's recommendation: {detail}"
            return candidate
        if candidate is not None:
            detail = f"{detail}; it was rolled back before: not tried again"
        self._later(now, self.rules.retry, WAITING, f"the last sweep found no better setting; next after "
                    f"{self.rules.retry:g} s")
        return CanaryDecision(now, "keep", NO_BETTER, detail)

    def on_failure(self, now: float, what: str) -> float:
        """A sweep failed (`what`: why); returns the delay before the next one."""
        self.failures += 1
        self.failed += 1
        self.last = f"failed: {what}"
        rules = self.rules
        delay = Backoff(rules.backoff, max(rules.retry, rules.backoff)).ceiling(self.failures - 1)
        self._later(now, delay, BACKOFF, f"sweep failed ({what}); {self.failures} in a row, next after {delay:g} s")
        return delay

    def on_final(self, now: float, decision: CanaryDecision, candidate: BatchSetting) -> None:
        """The canary this search started decided (promote or rollback)."""
        if decision.action == "rollback":
            self.rejected.add(candidate)
        self._later(now, self.rules.retry, WAITING, f"the canary's {decision.action} ({decision.reason}); next "
                    f"sweep after {self.rules.retry:g} s")

    def on_cancelled(self, now: float) -> None:
        """A sweep was abandoned (the proxy drains, the route changed): nothing learned."""
        if self.state == SWEEPING:
            self._later(now, 0.0, WAITING_FOR_DATA, "the last sweep was abandoned")

    def _later(self, now: float, delay: float, state: str, why: str) -> None:
        self.state, self.why, self.next_at = state, why, now + delay

    def summary(self, now: float) -> dict[str, object]:
        held, rules = self.held, self.rules
        return {
            "state": self.state, "why": self.why, "sweeps": self.sweeps, "failed_sweeps": self.failed,
            "last": self.last or None,
            "next_sweep_in_s": round(max(0.0, self.next_at - now), 3) if self.state in (WAITING, BACKOFF) else None,
            "recorded": {"recording": held.recording, "arrivals": held.arrivals, "batches": held.batches,
                         "since_last_sweep": held.recorded - self.swept_recorded},
            "needs": {"arrivals": rules.min_arrivals, "batches": rules.min_batches},
            "rejected": [setting.describe() for setting in self.rejected],
        }


__all__ = ["BACKOFF", "NO_BETTER", "SWEEPING", "TRYING", "WAITING", "WAITING_FOR_DATA", "CanarySearch", "Holdings",
           "SearchRules"]
