"""`max_in_flight: auto`: the gradient controller fed by batch times (pure, on a fake clock), then the batcher
that follows it, and the config forms."""

from __future__ import annotations

from typing import Any

import pytest
from batching_support import make_handler, request, settle, submit

from meshbatch.batching.model import LatencyModel
from meshbatch.batching.slots import AutoSlots
from meshbatch.clock import FakeClock
from meshbatch.config import ConfigError, parse
from meshbatch.config.model import AutoInFlight, Batch, InFlightGradient
from meshbatch.telemetry.metrics import Registry

BOUNDS = InFlightGradient(min=1, max=16, sample_window_ms=100, min_rtt_batches=5, jitter_percent=0,
                          min_rtt_interval_ms=3_600_000)


def feed(slots: AutoSlots, clock: FakeClock, seconds: float, windows: int, per_window: int = 5,
         size: int = 1) -> list[int]:
    """`windows` sample windows of batches that each took `seconds`; the limit after each window."""
    limits = []
    for _ in range(windows):
        for _ in range(per_window):
            clock.advance(0.1 / per_window)
            slots.observe(size, seconds, clock.now())
        limits.append(slots.limit)
    return limits


def test_it_measures_at_the_minimum_then_grows_while_the_upstream_stays_fast():
    clock = FakeClock()
    slots = AutoSlots(BOUNDS, LatencyModel(), clock.now(), rng=lambda: 0.0)
    assert slots.limit == 1 and slots.summary()["state"] == "measuring"
    limits = feed(slots, clock, 0.010, 8)
    assert slots.summary()["state"] == "adjusting" and slots.summary()["min_rtt_ms"] == 10.0
    assert limits == sorted(limits) and limits[-1] == 16  # grows to the bound, never past it


def test_an_upstream_that_gets_slower_gets_fewer_slots_and_more_when_fast_again():
    clock = FakeClock()
    slots = AutoSlots(BOUNDS, LatencyModel(), clock.now(), rng=lambda: 0.0)
    feed(slots, clock, 0.010, 8)
    assert slots.limit == 16
    slower = feed(slots, clock, 0.040, 6)
    assert slower == sorted(slower, reverse=True) and slower[-1] <= 4
    faster = feed(slots, clock, 0.010, 6)
    assert faster == sorted(faster) and faster[-1] == 16


def test_the_bounds_hold_however_slow_or_fast():
    clock = FakeClock()
    bounds = BOUNDS.model_copy(update={"min": 2, "max": 5})
    slots = AutoSlots(bounds, LatencyModel(), clock.now(), rng=lambda: 0.0)
    assert slots.limit == 2
    assert max(feed(slots, clock, 0.001, 10)) == 5
    assert min(feed(slots, clock, 10.0, 10)) >= 2


def test_the_size_a_batch_owes_its_time_to_is_not_read_as_a_slower_upstream():
    """Fewer slots make bigger batches, which take longer: with the model's per-item cost taken out, a batch of
    50 at the same per-call cost is the same sample as a batch of 1."""
    clock = FakeClock()
    model = LatencyModel(window=16)
    for n in (1, 10, 20, 40, 50, 5, 30, 15) * 2:
        model.observe(n, 0.005 + 0.001 * n)
    assert model.ready
    slots = AutoSlots(BOUNDS, model, clock.now(), rng=lambda: 0.0)
    feed(slots, clock, 0.006, 1, size=1)  # min RTT from one-item batches: 6 ms
    limits = feed(slots, clock, 0.055, 8, size=50)  # 5 ms + 50 x 1 ms: no slower than one item per call
    assert limits[-1] == 16


def test_failures_give_no_sample():
    clock = FakeClock()
    slots = AutoSlots(BOUNDS, LatencyModel(), clock.now(), rng=lambda: 0.0)
    slots.gradient.sample(None, clock.now())
    assert slots.samples == 0 and slots.summary()["state"] == "measuring"


# -- the batcher ----------------------------------------------------------------------------------------------

async def test_the_batcher_sends_as_many_batches_at_once_as_the_slots_allow():
    handler, upstream, clock = make_handler(max_in_flight={"auto": {"min": 1, "max": 4, "min_rtt_batches": 2,
                                                                     "sample_window_ms": 10}})
    assert handler.dispatcher.max_in_flight == 1
    at_once = []
    for _ in range(8):
        tasks = []
        for i in range(4):  # one at a time: each goes alone while a slot is free, else waits for one
            tasks.append(submit(handler, request({"n": i})))
            await settle()
        at_once.append(len(upstream.pending()))
        while upstream.pending():
            calls = upstream.pending()
            clock.advance(0.011)
            for call in calls:
                call.echo()
            await settle()
        assert all(t.done() and t.result().status == 200 for t in tasks)
    assert at_once[0] == 1 and at_once[-1] == 4  # one slot while measuring, four once the upstream proved fast
    assert handler.dispatcher.max_in_flight == 4
    view = handler.summary()
    assert view["max_in_flight"] == 4
    auto: Any = view["in_flight_auto"]
    assert auto["min"] == 1 and auto["max"] == 4 and auto["limit"] == 4 and auto["state"] == "adjusting"


async def test_a_slower_upstream_gets_fewer_batches_at_once():
    handler, upstream, clock = make_handler(max_in_flight={"auto": {"min": 1, "max": 4, "min_rtt_batches": 2,
                                                                     "sample_window_ms": 10}})

    async def rounds(n: int, seconds: float) -> list[int]:
        at_once = []
        for _ in range(n):
            for i in range(4):
                submit(handler, request({"n": i}))
                await settle()
            at_once.append(len(upstream.pending()))
            while upstream.pending():
                calls = upstream.pending()
                clock.advance(seconds)
                for call in calls:
                    call.echo()
                await settle()
        return at_once

    assert (await rounds(8, 0.011))[-1] == 4
    slower = await rounds(8, 0.050)
    assert slower[-1] < 4 and handler.dispatcher.max_in_flight < 4


async def test_the_limit_is_a_gauge():
    registry = Registry()
    handler, _, _ = make_handler(registry=registry, max_in_flight="auto")
    text = registry.render().decode()
    assert handler.dispatcher.max_in_flight == 1
    assert 'meshbatch_batch_in_flight_limit{route="orders"} 1' in text


async def test_a_fixed_number_has_no_controller():
    handler, _, _ = make_handler(max_in_flight=3)
    assert handler.slots is None and handler.dispatcher.max_in_flight == 3
    assert handler.summary()["in_flight_auto"] is None


# -- config ---------------------------------------------------------------------------------------------------

ROUTE = ("listeners: [{name: l, listen: '127.0.0.1:0', routes: [{name: r, cluster: c, batch: {max_in_flight: %s}}]}]"
         "\nclusters: [{name: c, endpoints: ['127.0.0.1:1']}]\n")
AT = "listeners[0].routes[0].batch.max_in_flight"


@pytest.mark.parametrize(("text", "low", "high"), [("4", None, 4), ("auto", 1, 16), ("{auto: {}}", 1, 16),
                                                   ("{auto: }", 1, 16), ("{auto: {min: 2, max: 8}}", 2, 8)])
def test_config_forms(text, low, high):
    batch = parse(ROUTE % text).listeners[0].routes[0].batch
    assert isinstance(batch, Batch) and batch.in_flight_cap == high
    if low is None:
        assert batch.max_in_flight == high
    else:
        assert isinstance(batch.max_in_flight, AutoInFlight) and batch.max_in_flight.auto.min == low


@pytest.mark.parametrize(("text", "error"), [
    ("0", f"{AT}: must be >= 1"),
    ("automatic", f"{AT}: must be a number of batches, 'auto' or {{auto: {{min, max}}}}"),
    ("{auto: {min: 9, max: 2}}", f"{AT}.auto: min must be <= max"),
    ("{auto: {mni: 2}}", f"{AT}.auto.mni: unknown key; did you mean 'min'?"),
    ("{auto: {max: 0}}", f"{AT}.auto.max: must be >= 1"),
    ("{fixed: 3}", f"{AT}.fixed: unknown key"),
])
def test_config_errors_name_their_path(text, error):
    with pytest.raises(ConfigError) as info:
        parse(ROUTE % text)
    assert [str(p) for p in info.value.problems] == [error]


def test_the_config_dump_reads_back():
    batch = Batch(max_in_flight={"auto": {"min": 2, "max": 6}})
    again = Batch.model_validate(batch.model_dump())
    assert again.max_in_flight == batch.max_in_flight and again.in_flight_cap == 6
