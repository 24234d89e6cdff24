"""The dispatcher of a route with a canary (`batch.adaptive.canary`): the pure core (batching/canary.py) wired in.

`CanaryDispatcher` is the route's `Dispatcher` with three hooks and nothing else changed:
- `pump`: the batches one pump seals are formed under the active arm's setting (the accumulator's size cap and
  hold, the slots); they are counted to that arm, and the arm and setting of the next batch are applied. When the
  setting changes, the dispatcher looks again at the end of the tick (its timer was set for the old hold);
- `_settle`: before a sent batch's callers are answered as usual (exactly once, whatever the arm), its figures
  go to its arm: each caller's latency (arrival to answer), the upstream time, its items and those in error;
- each decision is recorded: the last `decisions_kept` in `/batchers`,
  `meshbatch_batch_canary_decisions_total{route,decision,reason}` and a log line; a final one (promote or
  rollback) applies its setting to every later batch.

`attach_canary` prepares it once from the route's config (`prepare`: the route's own setting, the rules, the
counters) and starts the configured candidate's canary at once (`start(candidate)`); with no candidate the route's
search (batching/canary_search.py) finds one, and the runtime calls `start` with it, or `note` with a `keep`
(`no_better_setting`) when there is nothing to try. A final decision tells the search too.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable, Sequence

from meshbatch.batching.batch import IN_FLIGHT, Batch, Outcome
from meshbatch.batching.canary import ARMS, BatchSetting, Canary, CanaryDecision, CanaryRules
from meshbatch.batching.canary_search import CanarySearch, SearchRules
from meshbatch.batching.codecs.base import ItemResult
from meshbatch.batching.dispatcher import Dispatcher
from meshbatch.batching.stats import register_gauges, unregister_gauges
from meshbatch.config.plain import Adaptive, Candidate, Sweep
from meshbatch.config.plain import Batch as BatchConfig
from meshbatch.errors import ProxyError
from meshbatch.telemetry.metrics import Registry

log = logging.getLogger("meshbatch.batching")


def _failed(outcome: Outcome) -> bool:
    return isinstance(outcome, ProxyError) or (isinstance(outcome, ItemResult) and outcome.status >= 500)


class CanaryDispatcher(Dispatcher):
    canary: Canary | None = None
    search: CanarySearch | None = None

    def prepare(self, base: BatchSetting, rules: CanaryRules, registry: Registry, kept: int = 20,
                search: CanarySearch | None = None) -> None:
        """Make this dispatcher a canary's: `base` is the route's own setting, `rules` judge each canary, `search`
        (when the route names no candidate) finds the candidates; no canary runs until `start`."""
        self.base, self.rules, self.search = base, rules, search
        self.decisions: deque[tuple[float, CanaryDecision]] = deque(maxlen=kept)  # (wall-clock time, it)
        self._arm_of: dict[Batch, int] = {}
        self._sealing = 0
        self._sealed = 0
        self._registry = registry
        self._decided = registry.counter(
            "meshbatch_batch_canary_decisions_total", "Canary decisions of batching routes (batch.adaptive.canary), "
            "by decision (promote, rollback, keep: a window ended and the canary goes on, or a sweep found no "
            "better setting) and reason (passed, p99, cost, errors, inconclusive, too_few, no_better_setting)",
            ["route", "decision", "reason"])
        self._batches = registry.counter(
            "meshbatch_batch_canary_batches_total", "Batches sent under each arm of a canary (current, candidate)",
            ["route", "arm"])
        self._arm_labels = [(self.route, arm) for arm in ARMS]
        register_gauges(registry, self, _gauges)

    @property
    def setting(self) -> BatchSetting:
        """The route's setting outside a canary's candidate batches: its own, or what the last canary chose."""
        canary = self.canary
        if canary is None:
            return self.base
        return canary.current if canary.running else canary.setting

    def start(self, candidate: BatchSetting) -> Canary:
        """Try `candidate` against the route's setting now, on the rules' share of its batches (a canary running
        already is replaced)."""
        canary = Canary(self.setting, candidate, self.rules, self.clock.now())
        self.canary = canary
        self._arm_of.clear()
        self._sealing = canary.arm
        self._apply(canary.setting)
        return canary

    def note(self, decision: CanaryDecision) -> None:
        """Record a decision taken outside a canary (the search's `keep`, `no_better_setting`)."""
        self.decisions.append((time.time(), decision))
        self._decided.inc((self.route, decision.action, decision.reason))
        log.info("canary %s on route %s: %s: %s", decision.action, self.route, decision.reason, decision.detail)

    def _apply(self, setting: BatchSetting) -> None:
        acc = self.acc
        acc.hold = setting.hold
        acc.cap = setting.max_items
        if acc.preferred is not None:
            acc.preferred.max_wait = setting.max_wait
        if setting.max_in_flight is not None:
            self.max_in_flight = setting.max_in_flight

    # -- hooks ----------------------------------------------------------------------------------------------

    def pump(self, now: float | None = None) -> None:
        canary = self.canary
        if canary is None or not canary.running:
            super().pump(now)
            return
        self._sealing, self._sealed = canary.arm, 0
        super().pump(now)
        if self._sealed:
            before = canary.setting
            canary.on_sealed(self._sealed)
            after = canary.setting
            if after != before:
                self._apply(after)
                if self.loop is not None and not self.loop.is_closed() and self.acc.queued:
                    self._kick()

    def _start(self, batch: Batch, now: float) -> None:
        canary = self.canary
        if canary is not None and canary.running:
            self._arm_of[batch] = self._sealing
            self._sealed += 1
            self._batches.inc(self._arm_labels[self._sealing])
        super()._start(batch, now)

    def _settle(self, batch: Batch, results: Sequence[Outcome] | None, error: Outcome) -> None:
        canary = self.canary
        arm = self._arm_of.pop(batch, None) if canary is not None else None
        if canary is None or arm is None or batch.state != IN_FLIGHT:
            super()._settle(batch, results, error)
            return
        now = self.clock.now()
        items = batch.items[:len(batch.items) - batch.padding]
        latencies = [now - waiter.arrived for item in items for waiter in item.waiters]
        errors = len(items) if results is None else sum(1 for outcome in results[:len(items)] if _failed(outcome))
        upstream = max(0.0, now - batch.sent_at)
        super()._settle(batch, results, error)
        failed = results is None or (bool(items) and errors == len(items))  # no caller of it got an answer
        decision = canary.on_done(arm, now, latencies, len(items), upstream, errors, failed)
        if decision is not None:
            self._record(canary, decision)

    def _record(self, canary: Canary, decision: CanaryDecision) -> None:
        self.decisions.append((time.time(), decision))
        final = not canary.running
        if final:
            self._arm_of.clear()  # batches still in flight count for nobody: the canary is over
            self._apply(canary.setting)
            if self.search is not None:
                self.search.on_final(self.clock.now(), decision, canary.candidate)
        self._decided.inc((self.route, decision.action, decision.reason))
        figures = "; ".join(f"{arm} p99 {f['p99_ms']} ms, cost {f['cost_ms_per_item']} ms/item, errors "
                            f"{f['error_rate']}, {f['batches']} batches" for arm, f in decision.figures.items())
        shown = canary.setting if not canary.running else canary.candidate
        setting = " ".join(f"{k}={v}" for k, v in shown.describe().items() if v is not None)
        (log.warning if decision.action == "rollback" else log.info)(
            "canary %s on route %s: %s: %s [%s]; %s %s", decision.action, self.route, decision.reason,
            decision.detail, figures, "now" if final else "candidate", setting)
        if final and self.loop is not None and not self.loop.is_closed():
            self._kick()

    async def drain(self, timeout: float) -> None:
        try:
            await super().drain(timeout)
        finally:
            if hasattr(self, "rules"):
                unregister_gauges(self._registry, self)

    def canary_summary(self) -> dict[str, object] | None:
        canary, now = self.canary, self.clock.now()
        search = None if self.search is None else self.search.summary(now)
        if canary is None:
            view: dict[str, object] = {"state": self.search.state if self.search is not None else "none",
                                       "share": self.rules.share, "current": self.base.describe(), "candidate": None}
        else:
            view = canary.summary(now)
        return {**view, "setting": self.setting.describe(), "search": search,
                "decisions": [{"time": round(wall, 3), "decision": d.action, "reason": d.reason, "detail": d.detail,
                               **d.figures} for wall, d in reversed(self.decisions)]}


def setting_of(config: BatchConfig) -> BatchSetting:
    """The route's own setting, as its config gives it."""
    slots = config.max_in_flight
    return BatchSetting(config.max_items, config.min_wait_ms / 1000, config.max_wait_ms / 1000,
                        slots if isinstance(slots, int) else None)


def candidate_of(current: BatchSetting, want: Candidate) -> BatchSetting:
    """`current` with what `want` (a `candidate` block) changes."""
    return current.merged(
        want.max_items, None if want.min_wait_ms is None else want.min_wait_ms / 1000,
        None if want.max_wait_ms is None else want.max_wait_ms / 1000, want.max_in_flight)


def rules_of(adaptive: Adaptive, share: float) -> CanaryRules:
    return CanaryRules(
        share=share, window=adaptive.window_ms / 1000, min_batches=adaptive.min_batches,
        max_p99_increase=adaptive.max_p99_increase_percent / 100, p99_slack=adaptive.p99_slack_ms / 1000,
        min_cost_decrease=adaptive.min_cost_decrease_percent / 100,
        max_error_increase=adaptive.max_error_increase_percent / 100,
        min_failed_batches=adaptive.min_failed_batches, passes=adaptive.passes, failures=adaptive.failures,
        max_windows=adaptive.max_windows)


def search_rules(adaptive: Adaptive) -> SearchRules:
    """The search's rules from `batch.adaptive.sweep` (its defaults when absent): the next sweep after
    `retry_ms`, by default 10 windows bounded to [10 s, 1 h] (and never below one window)."""
    sweep = adaptive.sweep or Sweep()
    window = adaptive.window_ms / 1000
    retry = sweep.retry_ms / 1000 if sweep.retry_ms is not None else max(window, min(max(10 * window, 10.0), 3600.0))
    return SearchRules(min_arrivals=sweep.min_arrivals, min_batches=sweep.min_batches, retry=retry,
                       backoff=min(10.0, retry), timeout=sweep.timeout_ms / 1000, memory_mb=sweep.memory_mb)


def attach_canary(dispatcher: CanaryDispatcher, config: BatchConfig, registry: Registry) -> None:
    """Wire `batch.adaptive`'s canary into `dispatcher`: started at once with a `candidate`, else searched for."""
    adaptive = config.adaptive
    assert adaptive is not None and adaptive.canary is not None
    base = setting_of(config)
    search = None if adaptive.candidate is not None else CanarySearch(search_rules(adaptive))
    dispatcher.prepare(base, rules_of(adaptive, adaptive.canary), registry, adaptive.decisions_kept, search)
    if adaptive.candidate is not None:
        dispatcher.start(candidate_of(base, adaptive.candidate))


def _gauges(owner: object) -> Iterable[tuple[str, str, float]]:
    assert isinstance(owner, CanaryDispatcher)
    canary = owner.canary
    yield ("meshbatch_batch_canary_running", "1 while a canary tries a candidate setting on a batching route, 0 "
           "once it promoted or rolled it back (or before one starts)", 1.0 if canary and canary.running else 0.0)
    yield ("meshbatch_batch_canary_promoted", "1 when a batching route's last canary promoted its candidate (the "
           "route runs it), else 0", 1.0 if canary and canary.state == "promoted" else 0.0)


__all__ = ["CanaryDispatcher", "attach_canary", "candidate_of", "rules_of", "search_rules", "setting_of"]
