"""The flusher on a fake clock: acks, per-item retries with backoff, poison isolation by splitting, dead
letters after N attempts, outages that hold the batch without counting attempts, delivered waiters."""

from __future__ import annotations

import asyncio
import random
import sys
from pathlib import Path

import pytest
from ingest_support import ScriptedSink, records, sqlite_log

from meshbatch.clock import FakeClock
from meshbatch.core.backoff import Backoff
from meshbatch.ingest.flusher import Flusher, FlushPolicy
from meshbatch.ingest.logs.sqlite import SQLiteLog
from meshbatch.ingest.refusals import DeliveryFailed
from meshbatch.ingest.waiters import Waiters


async def setup(tmp_path: Path, n: int, **policy: float) -> tuple[SQLiteLog, ScriptedSink, Flusher, FakeClock]:
    clock = FakeClock()
    log = sqlite_log(tmp_path, clock)
    await log.open()
    await log.append(records(n))
    sink = ScriptedSink()
    options = {"max_items": 100, "max_attempts": 3, "backoff_initial": 1.0, "backoff_max": 8.0, **policy}
    flusher = Flusher("r", log, sink, FlushPolicy(**options), clock,  # type: ignore[arg-type]
                      backoff=Backoff(1.0, 8.0, random.Random(7).random))
    return log, sink, flusher, clock


def test_deliveries_wait_the_shared_backoff(tmp_path: Path) -> None:
    flusher = Flusher("r", None, None, FlushPolicy(backoff_initial=0.1, backoff_max=2.0), FakeClock())  # type: ignore[arg-type]
    assert isinstance(flusher.backoff, Backoff)
    assert (flusher.backoff.base, flusher.backoff.cap) == (0.1, 2.0)


async def test_a_batch_is_delivered_and_acknowledged(tmp_path: Path) -> None:
    log, sink, flusher, _ = await setup(tmp_path, 10)
    assert await flusher.step() == 10
    assert sink.stored == [f"e{i}" for i in range(10)]
    await log.flush()
    assert log.stats()["backlog"] == 0
    assert await flusher.step() == 0
    assert flusher.summary()["delivered"] == 10
    await log.close()


async def test_a_poison_item_is_isolated_and_parked_after_n_attempts(tmp_path: Path) -> None:
    log, sink, flusher, clock = await setup(tmp_path, 8)
    sink.poison = {"e5"}
    await flusher.step()
    assert sorted(sink.stored) == sorted(f"e{i}" for i in range(8) if i != 5)  # only e5 left behind
    assert sink.calls[:3] == [[f"e{i}" for i in range(8)], ["e0", "e1", "e2", "e3"], ["e4", "e5", "e6", "e7"]]
    assert flusher.splits >= 1
    for attempt in (1, 2):
        assert await flusher.step() == 0  # not yet due
        clock.advance(Backoff(1.0, 8.0).ceiling(attempt - 1))
        assert await flusher.step() == 1
        assert sink.calls[-1] == ["e5"]
    await log.flush()
    stats = log.stats()
    assert (stats["backlog"], stats["dead_letters"]) == (0, 1)
    letters = await log.dead_letters(10)
    assert letters[0]["id"] == "e5" and letters[0]["attempts"] == 3 and "does not fit" in letters[0]["reason"]
    assert flusher.summary()["dead_lettered"] == 1 and flusher.summary()["retried"] == 2
    await log.close()


async def test_only_the_failed_items_are_retried(tmp_path: Path) -> None:
    log, sink, flusher, clock = await setup(tmp_path, 5)
    sink.fail_ids = {"e1", "e3"}
    await flusher.step()
    assert sink.stored == ["e0", "e2", "e4"]
    sink.fail_ids = set()
    clock.advance(1.0)
    await flusher.step()
    assert sorted(sink.calls[-1]) == ["e1", "e3"]  # in order of their (jittered) due times
    assert sorted(sink.stored) == [f"e{i}" for i in range(5)]
    await log.close()


async def test_an_outage_holds_the_batch_without_counting_attempts(tmp_path: Path) -> None:
    log, sink, flusher, clock = await setup(tmp_path, 4, max_attempts=2)
    sink.down = True
    for outage in range(1, 6):
        assert await flusher.step() == 4
        assert flusher.outages == outage
        assert await flusher.step() == 0  # in an outage: nothing taken
        clock.advance(8.0)
    assert sink.stored == []
    sink.down = False
    assert await flusher.step() == 4
    assert sorted(sink.stored) == ["e0", "e1", "e2", "e3"]
    assert flusher.outages == 0
    await log.flush()
    assert log.stats()["dead_letters"] == 0  # five outages, max_attempts 2: nobody was parked
    await log.close()


async def test_delivered_waiters(tmp_path: Path) -> None:
    log, sink, flusher, _clock = await setup(tmp_path, 2, max_attempts=1)
    waiters = Waiters()
    flusher.waiters = waiters
    ok, bad = waiters.add(["e0", "e1"])
    sink.fail_ids = {"e1"}
    await flusher.step()
    await ok
    with pytest.raises(DeliveryFailed) as info:
        await bad
    assert (info.value.status, info.value.reason) == (502, "ingest_dead_lettered")
    assert len(waiters) == 0
    await log.close()


async def test_the_loop_delivers_and_stops(tmp_path: Path) -> None:
    clock = FakeClock()
    log = sqlite_log(tmp_path, clock)
    await log.open()
    sink = ScriptedSink()
    flusher = Flusher("r", log, sink, FlushPolicy(max_items=7, max_in_flight=2), clock)
    flusher.start()
    for i in range(5):
        await log.append(records(10, i * 10))
    async with asyncio.timeout(5):
        while len(sink.stored) < 50:
            await asyncio.sleep(0)
    await flusher.stop(1.0)
    assert sorted(sink.stored) == sorted(f"e{i}" for i in range(50))
    assert max(len(c) for c in sink.calls) <= 7
    await log.close()


class _Wrapped:
    """A log in front of a real one: what it does not define is the real log's."""

    def __init__(self, inner: SQLiteLog) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


async def _until_stored(sink: ScriptedSink, n: int, flusher: Flusher,
                        seen: list[BaseException | None] | None = None) -> None:
    """Waits until the sink holds `n` events, then stops the flusher (also when they never come); `seen` gets
    the exception this task sees as being handled (`sys.exc_info()`) at each turn of the loop."""
    try:
        async with asyncio.timeout(10):
            while len(sink.stored) < n:
                if seen is not None:
                    seen.append(sys.exc_info()[1])
                await asyncio.sleep(0)
    finally:
        await flusher.stop(1.0)


class _FlakyLog(_Wrapped):
    """A log whose reads fail `failures` times before they work (a broker hiccup, a long poll ending oddly)."""

    def __init__(self, inner: SQLiteLog, failures: int) -> None:
        super().__init__(inner)
        self.failures = failures

    async def take(self, max_items: int, max_bytes: int) -> list:  # type: ignore[type-arg]
        if self.failures:
            self.failures -= 1
            raise TimeoutError("the read failed")
        return await self.inner.take(max_items, max_bytes)


async def test_a_failed_read_does_not_wedge_the_loop(tmp_path: Path) -> None:
    """Every delivery slot taken by a read that failed is given back: with one slot, a failed read used to leave
    the loop waiting for it forever, and every acknowledged event after it stayed in the log. The pause after a
    failed read leaves no exception behind: compiled code that paused inside the `except` block left the read's
    error as every other task's sys.exc_info() meanwhile (tests/unit/test_compiled_rules.py)."""
    log, sink, flusher, _ = await setup(tmp_path, 5, max_in_flight=1)
    flusher.log = _FlakyLog(log, failures=3)  # type: ignore[assignment]
    flusher.error_pause = 0.0
    runner = asyncio.get_running_loop().create_task(flusher.run())
    seen: list[BaseException | None] = []
    try:
        await _until_stored(sink, 5, flusher, seen)
    finally:
        runner.cancel()
    assert sorted(sink.stored) == [f"e{i}" for i in range(5)]
    assert seen and set(seen) == {None}
    await log.close()


class _ArrivingLog(_Wrapped):
    """A log whose first read is followed, before it returns, by `arriving` more events appended and committed:
    events that arrive while the batch lingers, with no race with the commit's thread."""

    def __init__(self, inner: SQLiteLog, arriving: int) -> None:
        super().__init__(inner)
        self.arriving = arriving
        self.reads = 0
        self.first_read = asyncio.Event()

    async def take(self, max_items: int, max_bytes: int) -> list:  # type: ignore[type-arg]
        self.reads += 1
        batch = await self.inner.take(max_items, max_bytes)
        if self.reads == 1:
            if self.arriving:
                await self.inner.append(records(self.arriving, 100))
            self.first_read.set()
        return batch


@pytest.mark.parametrize(("linger", "slots", "batch"), [(0.0, 1, 3), (0.02, 1, 7), (0.02, 2, 7)])
async def test_a_batch_short_of_max_items_lingers_for_what_arrives(tmp_path: Path, linger: float, slots: int,
                                                                   batch: int) -> None:
    """What arrives while a batch lingers joins it, with a second slot free too: no batch is taken while another
    lingers, so batches leave in the log's order (a sharded sink keeps each key's order by it)."""
    log, sink, flusher, _ = await setup(tmp_path, 3, max_in_flight=slots, linger=linger)
    flusher.log = _ArrivingLog(log, arriving=4)  # type: ignore[assignment]
    flusher.start()
    await _until_stored(sink, 7, flusher)
    assert len(sink.calls[0]) == batch, "one batch after the linger; without one, what was ready at once"
    assert sorted(sink.stored) == sorted([f"e{i}" for i in range(3)] + [f"e{i}" for i in range(100, 104)])
    await log.close()


async def lingering(tmp_path: Path, arriving: int) -> tuple[SQLiteLog, ScriptedSink, Flusher]:
    """A running flusher whose first batch (3 events, `arriving` more committed meanwhile) lingers for an hour."""
    log, sink, flusher, _ = await setup(tmp_path, 3, max_in_flight=1, linger=3600.0)
    wrapped = _ArrivingLog(log, arriving)
    flusher.log = wrapped  # type: ignore[assignment]
    flusher.start()
    async with asyncio.timeout(10):
        await wrapped.first_read.wait()
    return log, sink, flusher


async def test_a_flusher_stopping_delivers_the_batch_that_lingers(tmp_path: Path) -> None:
    """A drain does not wait out the linger, nor leave the batch behind: the wait ends, the batch goes out."""
    log, sink, flusher = await lingering(tmp_path, arriving=2)
    async with asyncio.timeout(10):
        await flusher.stop(5.0)
    assert sink.calls == [["e0", "e1", "e2", "e100", "e101"]]
    await log.close()


async def test_a_batch_cancelled_while_it_lingers_goes_back_to_the_log(tmp_path: Path) -> None:
    """A delivery cancelled while its batch waits for more (a drain's time ran out) gives its events back, no
    attempt counted, rather than leaving them taken by a delivery that is gone."""
    log, sink, flusher = await lingering(tmp_path, arriving=0)
    async with asyncio.timeout(10):
        while not flusher._tasks:
            await asyncio.sleep(0)
    await asyncio.sleep(0)  # the delivery's first step: it lingers
    for task in list(flusher._tasks):
        task.cancel()
    await flusher.stop(1.0)
    assert sink.stored == []
    flusher.log = log
    assert await flusher.step() == 3
    assert sorted(sink.stored) == ["e0", "e1", "e2"]
    await log.close()


class _SecondReadFails(_Wrapped):
    """A log whose second read fails (the read that fills a lingering batch)."""

    def __init__(self, inner: SQLiteLog) -> None:
        super().__init__(inner)
        self.reads = 0

    async def take(self, max_items: int, max_bytes: int) -> list:  # type: ignore[type-arg]
        self.reads += 1
        if self.reads == 2:
            raise TimeoutError("the read failed")
        return await self.inner.take(max_items, max_bytes)


async def test_a_lingering_batch_whose_second_read_fails_goes_as_it_is(tmp_path: Path) -> None:
    log, sink, flusher, _ = await setup(tmp_path, 3, max_in_flight=1, linger=0.01)
    flusher.log = _SecondReadFails(log)  # type: ignore[assignment]
    flusher.start()
    await _until_stored(sink, 3, flusher)
    assert sink.calls[0] == ["e0", "e1", "e2"]
    await log.close()
