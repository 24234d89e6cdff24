"""Canaries that find their own candidate: `batch.adaptive: {canary: SHARE}` with no `candidate`.

One task per such route (its `BatchHandler`): every `POLL` seconds it asks the route's search (the pure core,
batching/canary_search.py) whether a sweep is due given what the batch recorder holds. When one is, the recorder's
document (what `GET /recorder` serves and `meshbatch tune` reads) goes to `meshbatch tune`'s sweep in a process of
its own (runtime/sweep_process.py); its recommendation, mapped to a candidate as `tune --apply` maps it
(tools/tune/apply.py `candidate`) and checked against the route's limits as a configured candidate is, starts the
route's canary (`CanaryDispatcher.start`), which promotes or rolls it back as a configured one does. A
recommendation that is the route's own setting (or outside its limits, or rolled back before) is a `keep` decision,
reason `no_better_setting`.

A reload that replaces the route cancels its task (the sweep's process is killed) and starts one for the new
batcher; an answer that comes back for a batcher that is no longer the route's is discarded. Every sweep is
counted: `meshbatch_batch_canary_sweeps_total{route,result}` (`candidate`, `no_better_setting`, `failed`,
`discarded`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from meshbatch.admin.dashboard import recorder_document
from meshbatch.runtime.sweep_process import SweepFailed, run_sweep
from meshbatch.telemetry.metrics import Counter, Registry

if TYPE_CHECKING:  # the batching package and the tuner: imported with the first batch route, never by a plain proxy
    from meshbatch.batching.canary import BatchSetting
    from meshbatch.batching.canary_search import CanarySearch, Holdings
    from meshbatch.batching.canary_shell import CanaryDispatcher
    from meshbatch.batching.handler import BatchHandler

log = logging.getLogger("meshbatch.batching")

POLL = 1.0  # seconds between looks at the recorder
Sweeper = Callable[[dict[str, Any], float, int], Awaitable[dict[str, Any]]]


def holdings(dispatcher: CanaryDispatcher) -> Holdings:
    from meshbatch.batching.canary_search import Holdings

    recorder = dispatcher.recorder
    if recorder is None:
        return Holdings(recording=False)
    batches = getattr(recorder, "batches", ())
    return Holdings(True, recorder.items, len(batches), recorder.recorded, recorder.max_items)


def sweep_request(handler: BatchHandler) -> dict[str, Any]:
    """The worker's input: the recorder's document, the canary's p99 rule, and a grid within the route's limits
    (sizes at or above its largest preferred size, its own size alone with pad_to_preferred)."""
    from meshbatch.tools.tune.sweep import DEFAULT_ITEMS

    config, adaptive = handler.config, handler.config.adaptive
    assert adaptive is not None
    setting = _dispatcher(handler).setting
    items: list[int] = []
    if config.pad_to_preferred is not None:
        items = [setting.max_items]
    elif config.preferred_sizes:
        items = sorted({n for n in DEFAULT_ITEMS if n >= config.preferred_sizes[-1]} | {setting.max_items})
    return {"trace": recorder_document(handler), "max_p99_increase": adaptive.max_p99_increase_percent / 100,
            "p99_slack_ms": adaptive.p99_slack_ms, "items": items}


def candidate_from(handler: BatchHandler, answer: Mapping[str, Any]) -> tuple[BatchSetting | None, str]:
    """The setting to try from the worker's `answer` (None: none), and what the sweep found, in words."""
    from pydantic import ValidationError

    from meshbatch.batching.canary_shell import candidate_of
    from meshbatch.config.model.adaptive import Candidate as CandidateModel  # (only a canary that sweeps)
    from meshbatch.config.model.adaptive import candidate_problem
    from meshbatch.config.plain import Candidate
    from meshbatch.tools.tune.apply import candidate as changed_keys

    config = handler.config
    own = _dispatcher(handler).setting
    best, current = _part(answer, "best"), _part(answer, "current")
    figures = (f"replayed p99 {_num(best, 'p99_ms'):.2f} ms vs {_num(current, 'p99_ms'):.2f} ms, upstream busy "
               f"{_num(best, 'busy'):.0%} vs {_num(current, 'busy'):.0%} (target {_num(answer, 'target_p99_ms'):.2f} "
               f"ms, {answer.get('arrivals')} arrivals, {answer.get('seconds')} s)")
    recommended = answer.get("recommended")
    if not isinstance(recommended, dict) or not all(isinstance(v, int | float) for v in recommended.values()):
        return None, f"the sweep answered no setting: {str(answer)[:200]}"
    if answer.get("met") is not True:
        return None, f"no setting keeps the replayed p99 within the canary's rule; {figures}"
    low, high = round(own.hold * 1000, 3), round(own.max_wait * 1000, 3)
    slots = own.max_in_flight if own.max_in_flight is not None else config.max_in_flight
    route_own: dict[str, Any] = {"max_items": own.max_items, "min_wait_ms": low, "max_wait_ms": high,
                                 "max_in_flight": slots}
    wanted = changed_keys(route_own, recommended)
    if not wanted:
        return None, f"the route's own setting is the best replayed; {figures}"
    try:
        checked = CandidateModel(**wanted)
    except ValidationError as exc:
        return None, f"the recommendation {wanted} is outside the limits: {exc.errors()[0]['msg']}"
    want = Candidate(**checked.model_dump())
    problem = candidate_problem(checked, max_items=own.max_items, min_wait_ms=low, max_wait_ms=high,
                                max_in_flight=slots, preferred_sizes=config.preferred_sizes,
                                padded=config.pad_to_preferred is not None)
    if problem is not None:
        return None, f"the recommendation {wanted} cannot run: candidate{problem}"
    shown = ", ".join(f"{k} {v:g}" for k, v in wanted.items())
    return candidate_of(own, want), f"{shown}; {figures}"


def _part(answer: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = answer.get(key)
    return value if isinstance(value, dict) else {}


def _num(source: Mapping[str, Any], key: str) -> float:
    value = source.get(key)
    return float(value) if isinstance(value, int | float) else float("nan")


def _dispatcher(handler: BatchHandler) -> CanaryDispatcher:
    from meshbatch.batching.canary_shell import CanaryDispatcher

    dispatcher = handler.dispatcher
    assert isinstance(dispatcher, CanaryDispatcher)
    return dispatcher


class RouteSearch:
    """One route's task: looks at its recorder, runs the sweeps, starts the canaries."""

    def __init__(self, handler: BatchHandler, search: CanarySearch, is_current: Callable[[], bool],
                 sweeper: Sweeper, sweeps: Counter) -> None:
        self.handler, self.search, self.is_current = handler, search, is_current
        self.dispatcher = _dispatcher(handler)
        self.sweeper, self.sweeps = sweeper, sweeps
        self.route = handler.route

    async def run(self) -> None:
        while True:
            try:
                await self.step()
            except Exception as exc:  # a fault of the proxy's own: the search backs off, the route serves on
                delay = self.search.on_failure(self.dispatcher.clock.now(), f"{type(exc).__name__}: {exc}")
                self.sweeps.inc((self.route, "failed"))
                log.exception("canary search on route %s failed; next sweep in %g s", self.route, delay)
            await asyncio.sleep(POLL)

    async def step(self) -> None:
        """One look: a sweep when one is due, and what its outcome leads to."""
        clock, search = self.dispatcher.clock, self.search
        if not search.due(clock.now(), holdings(self.dispatcher)):
            return
        rules = search.rules
        try:
            request = sweep_request(self.handler)
            answer = await self.sweeper(request, rules.timeout, rules.memory_mb)
        except asyncio.CancelledError:
            search.on_cancelled(clock.now())
            raise
        except SweepFailed as exc:
            if not self.is_current():
                return self._discard()
            delay = search.on_failure(clock.now(), str(exc))
            self.sweeps.inc((self.route, "failed"))
            log.warning("canary sweep on route %s failed: %s; the route keeps its setting, next sweep in %g s",
                        self.route, exc, delay)
            return
        if not self.is_current():
            return self._discard()
        from meshbatch.batching.canary import BatchSetting

        setting, detail = candidate_from(self.handler, answer)
        outcome = search.on_result(clock.now(), setting, detail)
        if isinstance(outcome, BatchSetting):
            self.sweeps.inc((self.route, "candidate"))
            log.info("canary sweep on route %s recommends %s: the canary starts", self.route, detail)
            self.dispatcher.start(outcome)
        else:
            self.sweeps.inc((self.route, "no_better_setting"))
            self.dispatcher.note(outcome)

    def _discard(self) -> None:
        self.search.on_cancelled(self.dispatcher.clock.now())
        self.sweeps.inc((self.route, "discarded"))
        log.info("canary sweep on route %s: the route changed meanwhile, its answer is discarded", self.route)


class AutoCanaries:
    """The tasks of the routes whose canary finds its own candidate, kept in step with each snapshot."""

    def __init__(self, registry: Registry, sweeper: Sweeper = run_sweep) -> None:
        self.sweeper = sweeper
        self.sweeps = registry.counter(
            "meshbatch_batch_canary_sweeps_total", "Sweeps of a batching route's recorded traffic for a canary "
            "with no candidate, by result (candidate, no_better_setting, failed, discarded)", ["route", "result"])
        self.batchers: dict[str, BatchHandler] = {}
        self.tasks: dict[int, tuple[BatchHandler, RouteSearch, asyncio.Task[None]]] = {}

    def sync(self, batchers: Mapping[str, BatchHandler]) -> None:
        """Start a task for each new batcher with a search; cancel those of batchers no longer serving."""
        self.batchers = dict(batchers)
        live = {id(b) for b in batchers.values()}
        for key in [key for key in self.tasks if key not in live]:
            self.tasks.pop(key)[2].cancel()
        for name, handler in batchers.items():
            from meshbatch.batching.canary_shell import CanaryDispatcher  # (a batcher: the batching package is in)

            dispatcher = handler.dispatcher
            if id(handler) in self.tasks or not isinstance(dispatcher, CanaryDispatcher) or dispatcher.search is None:
                continue
            route = RouteSearch(handler, dispatcher.search, self._is_current(name, handler), self.sweeper,
                                self.sweeps)
            task = asyncio.get_running_loop().create_task(route.run(), name=f"canary-search-{name}")
            self.tasks[id(handler)] = (handler, route, task)

    def _is_current(self, name: str, handler: BatchHandler) -> Callable[[], bool]:
        return lambda: self.batchers.get(name) is handler

    async def close(self) -> None:
        tasks = [task for _, _, task in self.tasks.values()]
        self.tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


__all__ = ["POLL", "AutoCanaries", "RouteSearch", "candidate_from", "holdings", "sweep_request"]
