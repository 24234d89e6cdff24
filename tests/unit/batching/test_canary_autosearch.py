"""A canary with no candidate (runtime/autocanary.py) on a fake clock: nothing starts without data, a recommendation
starts the canary, the route's own setting or a hostile answer is a keep, a sweep process that crashes or hangs is
killed, counted and retried later, and a reload mid-sweep discards it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from batching_support import make_handler

from meshbatch.batching.canary_shell import CanaryDispatcher
from meshbatch.batching.handler import BatchHandler
from meshbatch.runtime.autocanary import AutoCanaries, RouteSearch
from meshbatch.runtime.sweep_process import SweepFailed, run_sweep
from meshbatch.telemetry.metrics import Registry
from meshbatch.tools.tune.worker import run
from testbed.tune_trace import recorded

SEARCH = {"canary": 0.25, "window_ms": 1000, "min_batches": 5,
          "sweep": {"min_arrivals": 100, "min_batches": 10, "timeout_ms": 300, "retry_ms": 60_000}}


class Recorder:
    """What the recorder holds: a made-up trace of the route (recorder's document batches)."""

    def __init__(self, document: dict[str, Any], max_items: int = 65_536) -> None:
        self.batches = document["batches"]
        self.items = sum(len(b["arrivals"]) for b in self.batches)
        self.recorded = len(self.batches)
        self.max_items = max_items

    def add(self, batch: Any, done: float, ok: bool) -> None:  # pragma: no cover - not sent through here
        raise AssertionError

    def export(self) -> list[dict[str, object]]:
        return list(self.batches)


def route(registry: Registry | None = None, recorder: Recorder | None = None, **batch: Any) -> BatchHandler:
    handler, _, _ = make_handler(max_items=8, max_in_flight=1, registry=registry or Registry(),
                                 adaptive=batch.pop("adaptive", SEARCH), **batch)
    handler.dispatcher.recorder = recorder
    return handler


def searcher(handler: BatchHandler, sweeper: Any, registry: Registry | None = None) -> RouteSearch:
    dispatcher = handler.dispatcher
    assert isinstance(dispatcher, CanaryDispatcher) and dispatcher.search is not None
    sweeps = (registry or Registry()).counter("meshbatch_batch_canary_sweeps_total", "", ["route", "result"])
    return RouteSearch(handler, dispatcher.search, lambda: True, sweeper, sweeps)


async def in_process(request: dict[str, Any], timeout: float, memory_mb: int) -> dict[str, Any]:
    return run(request)


async def never(request: dict[str, Any], timeout: float, memory_mb: int) -> dict[str, Any]:
    raise AssertionError("no sweep may start")


TRACE = recorded(rate=1500, seconds=1.0, max_items=8)


async def test_nothing_starts_without_a_recorder_or_enough_data_and_batchers_say_why() -> None:
    handler = route()
    await searcher(handler, never).step()
    view = handler.summary()["canary"]
    assert view["state"] == "waiting_for_data" and view["candidate"] is None
    assert view["search"]["why"].startswith("recorder_off")
    handler.dispatcher.recorder = Recorder({"batches": TRACE["batches"][:5]})
    await searcher(handler, never).step()
    search = handler.summary()["canary"]["search"]
    assert search["recorded"]["batches"] == 5 and search["needs"] == {"arrivals": 100, "batches": 10}
    handler.dispatcher.recorder = Recorder(TRACE, max_items=50)
    await searcher(handler, never).step()
    assert handler.summary()["canary"]["search"]["why"].startswith("recorder_too_small")


async def test_a_recommendation_starts_the_routes_canary(caplog: pytest.LogCaptureFixture) -> None:
    registry = Registry()
    handler = route(registry, Recorder(TRACE))
    caplog.set_level(logging.INFO, logger="meshbatch.batching")
    await searcher(handler, in_process, registry).step()
    dispatcher = handler.dispatcher
    assert isinstance(dispatcher, CanaryDispatcher) and dispatcher.canary is not None
    view = handler.summary()["canary"]
    assert view["state"] == "running" and view["current"]["max_items"] == 8 and view["candidate"]["max_items"] > 8
    assert view["search"]["state"] == "trying" and view["search"]["sweeps"] == 1
    assert registry.counter("meshbatch_batch_canary_sweeps_total", "", []).get(("orders", "candidate")) == 1
    assert any("canary sweep on route orders recommends" in r.getMessage() for r in caplog.records)


def own_setting(**changes: Any) -> dict[str, Any]:
    setting = {"max_items": 8, "min_wait_ms": 0.0, "max_wait_ms": 5.0, "max_in_flight": 1, **changes}
    return {"recommended": setting, "met": True, "best": {"p99_ms": 1}, "current": {"p99_ms": 1}}


@pytest.mark.parametrize(("answer", "says"), [
    (own_setting(), "the route's own setting is the best"),
    (own_setting(max_items=64) | {"met": False}, "no setting keeps the replayed p99"),
    ({}, "answered no setting"),
    ({"recommended": "all of them", "met": True}, "answered no setting"),
    ({"recommended": {"max_items": "64"}, "met": True}, "answered no setting"),
    (own_setting(max_items=10 ** 9), "outside the limits"),
    (own_setting(max_items=0), "outside the limits"),
    (own_setting(min_wait_ms=-3), "outside the limits"),
    (own_setting(min_wait_ms=50.0), "cannot run"),  # min_wait_ms above max_wait_ms
])
async def test_the_routes_own_setting_or_a_hostile_answer_is_a_keep(answer: dict[str, Any], says: str) -> None:
    registry = Registry()
    handler = route(registry, Recorder(TRACE))

    async def answers(request: dict[str, Any], timeout: float, memory_mb: int) -> dict[str, Any]:
        return answer

    await searcher(handler, answers, registry).step()
    view = handler.summary()["canary"]
    assert view["candidate"] is None and view["search"]["state"] == "waiting"
    (decision,) = view["decisions"]
    assert (decision["decision"], decision["reason"]) == ("keep", "no_better_setting") and says in decision["detail"]
    assert registry.counter("meshbatch_batch_canary_decisions_total", "", []).get(
        ("orders", "keep", "no_better_setting")) == 1


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_a_sweep_process_that_crashes_or_hangs_is_killed_counted_and_retried_later(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pid_file = tmp_path / "pid"
    hang = (sys.executable, "-c", f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); "
            "time.sleep(60)")
    crash = (sys.executable, "-c", "import os; os.abort()")
    registry = Registry()
    handler = route(registry, Recorder(TRACE))
    caplog.set_level(logging.WARNING, logger="meshbatch.batching")
    for command, says in ((crash, "exit status -6"), (hang, "killed after 0.3 s")):
        async def sweeper(request: dict[str, Any], timeout: float, memory_mb: int,
                          command: tuple[str, ...] = command) -> dict[str, Any]:
            return await run_sweep(request, timeout, memory_mb, command)

        search = searcher(handler, sweeper, registry)
        search.search.next_at = 0.0  # the backoff of the first failure is not waited for here
        search.search.swept_recorded = 0
        await search.step()
        view = handler.summary()["canary"]["search"]
        assert view["state"] == "backoff" and says in view["last"], view
        assert any(says in r.getMessage() for r in caplog.records)
    assert not alive(int(pid_file.read_text()))
    assert handler.summary()["canary"]["search"]["failed_sweeps"] == 2
    assert registry.counter("meshbatch_batch_canary_sweeps_total", "", []).get(("orders", "failed")) == 2
    assert handler.dispatcher.canary is None  # the route serves with its own setting


async def test_bad_output_from_the_process_is_a_failure() -> None:
    for code in ("print('not json')", "print('[1]')", "import sys; sys.exit(3)"):
        with pytest.raises(SweepFailed):
            await run_sweep({}, 5.0, 256, (sys.executable, "-c", code))


async def test_the_sweep_process_is_held_to_its_memory() -> None:
    greedy = ("import sys; from meshbatch.tools.tune.worker import _limit; _limit(int(sys.argv[1])); "
              "bytearray(1 << 30)")
    with pytest.raises(SweepFailed, match="MemoryError"):
        await run_sweep({}, 10.0, 128, (sys.executable, "-c", greedy))


async def test_a_reload_that_replaces_the_route_mid_sweep_discards_it(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    hang = (sys.executable, "-c", f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); "
            "time.sleep(60)")

    async def sweeper(request: dict[str, Any], timeout: float, memory_mb: int) -> dict[str, Any]:
        return await run_sweep(request, 30.0, memory_mb, hang)

    registry = Registry()
    old, new = route(registry, Recorder(TRACE)), route(registry, Recorder({"batches": []}))
    canaries = AutoCanaries(registry, sweeper)
    canaries.sync({"orders": old})
    for _ in range(500):
        await asyncio.sleep(0.01)
        if pid_file.exists() and pid_file.read_text():
            break
    assert old.summary()["canary"]["search"]["state"] == "sweeping"
    canaries.sync({"orders": new})  # the reload: the old batcher's task is cancelled, its process killed
    for _ in range(500):  # the process is killed, then the cancelled task records its end (after the kill's wait)
        await asyncio.sleep(0.01)
        if not alive(int(pid_file.read_text())) and old.summary()["canary"]["search"]["state"] != "sweeping":
            break
    assert not alive(int(pid_file.read_text()))
    assert old.dispatcher.canary is None and old.summary()["canary"]["search"]["state"] == "waiting_for_data"
    assert len(canaries.tasks) == 1
    await canaries.close()


async def test_an_answer_for_a_route_that_changed_meanwhile_is_discarded() -> None:
    registry = Registry()
    old = route(registry, Recorder(TRACE))
    canaries = AutoCanaries(registry)
    canaries.batchers = {"orders": old}

    async def answer_after_a_reload(request: dict[str, Any], timeout: float, memory_mb: int) -> dict[str, Any]:
        canaries.batchers = {"orders": route(registry)}  # the reload lands while the answer is read
        return run(request)

    dispatcher = old.dispatcher
    assert isinstance(dispatcher, CanaryDispatcher) and dispatcher.search is not None
    await RouteSearch(old, dispatcher.search, canaries._is_current("orders", old), answer_after_a_reload,
                      canaries.sweeps).step()
    assert dispatcher.canary is None and not dispatcher.decisions
    assert canaries.sweeps.get(("orders", "discarded")) == 1


async def test_a_rolled_back_recommendation_is_not_tried_again() -> None:
    registry = Registry()
    recorder = Recorder(TRACE)
    handler = route(registry, recorder)
    search = searcher(handler, in_process, registry)
    await search.step()
    dispatcher = handler.dispatcher
    assert isinstance(dispatcher, CanaryDispatcher) and dispatcher.canary is not None
    canary, clock = dispatcher.canary, dispatcher.clock
    decision = None
    for _ in range(3):  # three failed candidate batches: rolled back at once
        decision = canary.on_done(1, clock.now(), [0.01], 1, 0.01, 1, True)
    assert decision is not None and decision.action == "rollback"
    dispatcher._record(canary, decision)
    view = handler.summary()["canary"]
    assert view["state"] == "rolled_back" and view["search"]["state"] == "waiting"
    assert view["search"]["rejected"] == [view["candidate"]]
    assert view["setting"]["max_items"] == 8  # the route runs its own setting again
    clock.advance(61)
    recorder.recorded += 100  # fresh traffic, the same shape: the same recommendation
    await search.step()
    newest = handler.summary()["canary"]["decisions"][0]
    assert (newest["decision"], newest["reason"]) == ("keep", "no_better_setting")
    assert "rolled back before" in newest["detail"] and dispatcher.canary is canary


async def test_a_fault_in_the_search_itself_backs_off_and_the_task_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = Registry()
    handler = route(registry, Recorder(TRACE))

    async def broken(request: dict[str, Any], timeout: float, memory_mb: int) -> dict[str, Any]:
        raise RuntimeError("a bug")

    search = searcher(handler, broken, registry)
    monkeypatch.setattr("meshbatch.runtime.autocanary.POLL", 0.0)
    task = asyncio.get_running_loop().create_task(search.run())
    for _ in range(100):
        await asyncio.sleep(0)
        if search.search.failed:
            break
    assert not task.done()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    view = handler.summary()["canary"]["search"]
    assert view["state"] == "backoff" and "RuntimeError: a bug" in view["last"]
