"""The canary of a batching route: try a candidate setting on a share of the batches, promote or roll it back.

A pure core on the batcher's clock: it takes events with an explicit `now` and returns decisions; the shell
(batching/canary_shell.py) applies the setting it names to the accumulator and the slots, and records decisions.

Arms. Each batch is formed under one setting (`max_items`, the hold `min_wait_ms`, `max_wait_ms`,
`max_in_flight`): the current one (arm `current`) or the candidate (arm `candidate`). After every batch sealed
the next one's arm is chosen so that the candidate's share of the batches sealed so far stays at `share`
(deterministic: the candidate takes the next batch when it is behind its share). Both arms run at the same time
on the same traffic, so they are compared with each other, not with the past (the baseline of Kayenta and Argo
Rollouts' experiments, here for free: one batch in ten is the experiment).

Figures per arm and window: the p99 of the callers' latency (arrival to answer), the upstream cost (upstream
seconds per item: the time the upstream spends per item, summed over the window's batches and divided by their
items; batches that failed as a whole are left out: a refusal is not a cheaper answer), and the error rate
(items answered with an error, of the items sent).

Decisions:
- at once, after any batch: **rollback** (`errors`) when the candidate has at least
  `min_failed_batches` failed batches since the canary started and its error rate since then exceeds the current
  arm's by more than `max_error_increase` (a share of items); counted since the start, not per window, so errors
  spread over windows too short to judge are not forgotten;
- at the end of each window (`window` seconds): if either arm has fewer than `min_batches` batches the window is
  not judged (never promote on too few samples); else it passes when the candidate's error rate is within the
  current's + `max_error_increase`, its p99 within `current p99 x (1 + max_p99_increase) + p99_slack`, and its
  cost at most `current cost x (1 - min_cost_decrease)`; it fails otherwise. `passes` passing windows in a row:
  **promote**; `failures` failing windows: **rollback**; `max_windows` windows without either: **rollback**
  (`inconclusive`). Each window starts afresh (one slow spell is judged once).
Both arms' callers wait in one queue: what a candidate does to the queue (bigger batches drain it faster) helps
both arms alike, so the comparison sees its hold, its batch time and its cost, not its effect on queueing; it is
cautious with a candidate whose gain is a shorter queue.
Every window's end is recorded as a decision too: `keep` (collecting), with its reason (`passed`, `p99`, `cost`,
`errors`, or `too_few` when not judged). After a final decision the canary is over: every batch uses the setting
it chose.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace

CURRENT, CANDIDATE = 0, 1
ARMS = ("current", "candidate")
# Caller latencies kept per arm and window: a uniform sample of them all (reservoir sampling), so a p99 costs one
# sort of at most this many (the /batchers view sorts four) whatever the traffic, and the window's start counts as
# much as its end.
MAX_SAMPLES = 4096


@dataclass(frozen=True, slots=True)
class BatchSetting:
    """What a batch is formed under. Seconds, not milliseconds."""

    max_items: int
    hold: float  # min_wait_ms
    max_wait: float  # max_wait_ms
    max_in_flight: int | None  # None: the route's slots are not the canary's to move (max_in_flight: auto)

    def merged(self, max_items: int | None = None, hold: float | None = None, max_wait: float | None = None,
               max_in_flight: int | None = None) -> BatchSetting:
        """This setting with the given fields replaced (None: kept)."""
        return replace(self, max_items=self.max_items if max_items is None else max_items,
                       hold=self.hold if hold is None else hold,
                       max_wait=self.max_wait if max_wait is None else max_wait,
                       max_in_flight=self.max_in_flight if max_in_flight is None else max_in_flight)

    def describe(self) -> dict[str, object]:
        return {"max_items": self.max_items, "min_wait_ms": round(self.hold * 1000, 3),
                "max_wait_ms": round(self.max_wait * 1000, 3), "max_in_flight": self.max_in_flight}


@dataclass(frozen=True, slots=True)
class CanaryRules:
    share: float  # of the batches, 0 < share <= 0.5
    window: float = 10.0  # seconds
    min_batches: int = 20
    max_p99_increase: float = 0.10
    p99_slack: float = 0.001
    min_cost_decrease: float = 0.0
    max_error_increase: float = 0.01
    min_failed_batches: int = 3
    passes: int = 2
    failures: int = 2
    max_windows: int = 10

    def __post_init__(self) -> None:
        if not 0 < self.share <= 0.5 or math.isnan(self.share):
            raise ValueError(f"share {self.share!r}: 0 < share <= 0.5")
        if self.window <= 0 or self.min_batches < 1 or self.passes < 1 or self.failures < 1:
            raise ValueError("window > 0, min_batches, passes and failures >= 1")


class ArmWindow:
    """One arm's figures over the current window."""

    __slots__ = ("_rng", "batches", "callers", "errors", "failed", "items", "latencies", "served", "upstream")

    def __init__(self) -> None:
        self.batches = 0
        self.failed = 0  # batches none of whose items got a result
        self.items = 0
        self.errors = 0  # items answered with an error
        self.served = 0  # items of the batches that did not fail
        self.upstream = 0.0  # their upstream seconds, summed (a refusal is no cheaper answer)
        self.callers = 0  # latencies seen; `latencies` holds a uniform sample of them
        self.latencies: list[float] = []
        self._rng = random.Random(0x5EED)  # the sample is the same for the same events (tests replay them)

    def add(self, latencies: list[float], items: int, upstream: float, errors: int, failed: bool) -> None:
        self.batches += 1
        self.failed += failed
        self.items += items
        self.errors += errors
        if not failed:
            self.served += items
            self.upstream += upstream
        kept = self.latencies
        seen = self.callers
        if seen + len(latencies) <= MAX_SAMPLES:
            kept.extend(latencies)
            self.callers = seen + len(latencies)
            return
        draw = self._rng.random
        for value in latencies:
            seen += 1
            if len(kept) < MAX_SAMPLES:
                kept.append(value)
            else:
                slot = int(draw() * seen)
                if slot < MAX_SAMPLES:
                    kept[slot] = value
        self.callers = seen

    @property
    def p99(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)] if ordered else 0.0

    @property
    def cost(self) -> float:
        """Upstream seconds per item, over the batches that did not fail."""
        return self.upstream / self.served if self.served else 0.0

    @property
    def error_rate(self) -> float:
        return self.errors / self.items if self.items else 0.0

    def figures(self) -> dict[str, object]:
        return {"batches": self.batches, "items": self.items, "callers": self.callers,
                "p99_ms": round(self.p99 * 1000, 3),
                "cost_ms_per_item": round(self.cost * 1000, 4), "error_rate": round(self.error_rate, 4),
                "failed_batches": self.failed}


@dataclass(frozen=True, slots=True)
class CanaryDecision:
    at: float  # on the batcher's clock
    action: str  # promote | rollback (final) | keep (collecting: a window ended without a final decision)
    reason: str  # passed | p99 | cost | errors | inconclusive | too_few (keep: the window was not judged)
    detail: str
    figures: dict[str, dict[str, object]] = field(default_factory=dict)  # arm name -> its window's figures


class Canary:
    """See the module docstring. `state`: running, promoted or rolled_back."""

    def __init__(self, current: BatchSetting, candidate: BatchSetting, rules: CanaryRules, now: float) -> None:
        self.current, self.candidate, self.rules = current, candidate, rules
        self.state = "running"
        self.arm = CURRENT  # the arm of the batch being formed now
        self.sealed = [0, 0]  # batches sealed per arm since the start
        self.arms = (ArmWindow(), ArmWindow())
        self.totals = (ArmWindow(), ArmWindow())  # since the start: errors are never forgotten with a window
        self.window_start = now
        self.windows = 0  # windows ended (judged or not)
        self.passed = 0  # passing windows in a row
        self.failed = 0  # failing windows
        self.decision: CanaryDecision | None = None

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def setting(self) -> BatchSetting:
        """The setting the next batch is formed under."""
        if self.state == "promoted" or (self.running and self.arm == CANDIDATE):
            return self.candidate
        return self.current

    def on_sealed(self, count: int = 1) -> int:
        """`count` batches were sealed under the active arm (returned); the arm of the next batch is chosen."""
        arm = self.arm
        if not self.running:
            return arm
        self.sealed[arm] += count
        total = self.sealed[CURRENT] + self.sealed[CANDIDATE]
        self.arm = CANDIDATE if self.sealed[CANDIDATE] < self.rules.share * (total + 1) else CURRENT
        return arm

    def on_done(self, arm: int, now: float, latencies: list[float], items: int, upstream: float, errors: int,
                failed: bool) -> CanaryDecision | None:
        """A batch of `arm` ended: its callers' latencies, items, upstream seconds, items in error, and whether it
        failed as a whole. Returns a decision when this batch (or the window it ends) makes one (`keep` included:
        `running` says whether the canary goes on)."""
        if not self.running:
            return None
        if not self.windows and not self.arms[CURRENT].batches and not self.arms[CANDIDATE].batches:
            self.window_start = now  # the first window starts with the traffic, not with the config
        self.arms[arm].add(latencies, items, upstream, errors, failed)
        self.totals[arm].add(latencies, items, upstream, errors, failed)
        decision = self._errors(now)  # after any batch: a current one that succeeds widens the gap too
        return decision if decision is not None else self.tick(now)

    def tick(self, now: float) -> CanaryDecision | None:
        """The end of a window, if it has come: its decision (`keep` collecting, or the final one)."""
        if not self.running or now - self.window_start < self.rules.window:
            return None
        self.windows += 1
        current, candidate = self.arms
        rules = self.rules
        verdict: tuple[str, str] | None = None
        if current.batches >= rules.min_batches and candidate.batches >= rules.min_batches:
            verdict = self._judge(current, candidate)
            if verdict is None:
                self.passed += 1
            else:
                self.passed = 0
                self.failed += 1
        figures = self._figures()
        self.arms = (ArmWindow(), ArmWindow())
        self.window_start = now
        if self.passed >= rules.passes:
            return self._decide("promoted", CanaryDecision(now, "promote", "passed", f"{self.passed} windows passed "
                                                     f"(of {self.windows})", figures))
        if verdict is not None and self.failed >= rules.failures:
            return self._decide("rolled_back", CanaryDecision(now, "rollback", verdict[0], verdict[1], figures))
        if self.windows >= rules.max_windows:
            return self._decide("rolled_back", CanaryDecision(
                now, "rollback", "inconclusive", f"no decision after {self.windows} windows ({self.passed} "
                f"passed in a row, {self.failed} failed; each arm needs {rules.min_batches} batches a window)",
                figures))
        if verdict is not None:
            return CanaryDecision(now, "keep", verdict[0], f"window {self.windows} failed ({self.failed} of "
                                  f"{rules.failures} to roll back): {verdict[1]}", figures)
        if self.passed:
            return CanaryDecision(now, "keep", "passed", f"window {self.windows} passed ({self.passed} in a row of "
                                  f"{rules.passes} to promote)", figures)
        return CanaryDecision(now, "keep", "too_few", f"window {self.windows} not judged: each arm needs "
                              f"{rules.min_batches} batches (current {current.batches}, candidate "
                              f"{candidate.batches})", figures)

    def _judge(self, current: ArmWindow, candidate: ArmWindow) -> tuple[str, str] | None:
        """None when the candidate passes; else (reason, detail)."""
        rules = self.rules
        if candidate.error_rate > current.error_rate + rules.max_error_increase:
            return "errors", (f"candidate error rate {candidate.error_rate:.2%} > current "
                              f"{current.error_rate:.2%}")
        bound = current.p99 * (1 + rules.max_p99_increase) + rules.p99_slack
        if candidate.p99 > bound:
            return "p99", (f"candidate p99 {candidate.p99 * 1000:.3f} ms > {bound * 1000:.3f} ms (current "
                           f"{current.p99 * 1000:.3f} ms)")
        limit = current.cost * (1 - rules.min_cost_decrease)
        if candidate.cost > limit:
            return "cost", (f"candidate upstream cost {candidate.cost * 1000:.4f} ms/item > {limit * 1000:.4f} "
                            f"(current {current.cost * 1000:.4f})")
        return None

    def _errors(self, now: float) -> CanaryDecision | None:
        current, candidate = self.totals
        rules = self.rules
        if candidate.failed < rules.min_failed_batches:
            return None
        if candidate.error_rate <= current.error_rate + rules.max_error_increase:
            return None
        return self._decide("rolled_back", CanaryDecision(
            now, "rollback", "errors", f"candidate error rate {candidate.error_rate:.2%} ({candidate.failed} "
            f"failed batches since the start) > current {current.error_rate:.2%}", self._figures(self.totals)))

    def _figures(self, arms: tuple[ArmWindow, ArmWindow] | None = None) -> dict[str, dict[str, object]]:
        return {name: arm.figures() for name, arm in zip(ARMS, arms or self.arms, strict=True)}

    def _decide(self, state: str, decision: CanaryDecision) -> CanaryDecision:
        self.state = state
        self.decision = decision
        self.arm = CURRENT
        return decision

    def summary(self, now: float) -> dict[str, object]:
        return {
            "state": self.state, "share": self.rules.share, "next_arm": ARMS[self.arm] if self.running else None,
            "current": self.current.describe(), "candidate": self.candidate.describe(),
            "batches": dict(zip(ARMS, self.sealed, strict=True)), "windows": self.windows,
            "passed_in_a_row": self.passed, "failed_windows": self.failed, "since_start": self._figures(self.totals),
            "window": {"elapsed_ms": round((now - self.window_start) * 1000, 3),
                       "length_ms": round(self.rules.window * 1000, 3), **self._figures()} if self.running else None,
        }


__all__ = ["ARMS", "CANDIDATE", "CURRENT", "ArmWindow", "BatchSetting", "Canary", "CanaryDecision", "CanaryRules"]
