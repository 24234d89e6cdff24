"""The adaptive concurrency controller (gradient on min RTT), driven by a fake clock."""

from __future__ import annotations

import asyncio

import pytest
from layers_support import Script, request

from meshbatch.clock import FakeClock
from meshbatch.config.model import AdaptiveConcurrency
from meshbatch.errors import ConcurrencyLimited
from meshbatch.layers.concurrency import ADJUSTING, MEASURING, ConcurrencyLayer, GradientController, percentile

CONFIG = AdaptiveConcurrency(min_rtt_requests=5, sample_window_ms=100, min_concurrency=2, max_concurrency=100,
                             min_rtt_interval_ms=10_000, jitter_percent=0)


def run(controller: GradientController, clock: FakeClock, rtt: float, n: int) -> None:
    """`n` requests of `rtt` seconds, one after another."""
    for _ in range(n):
        assert controller.try_acquire(clock.now())
        clock.advance(rtt)
        controller.release(rtt, clock.now())


def test_percentile_is_nearest_rank() -> None:
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 50) == 3.0
    assert percentile([1.0, 2.0], 100) == 2.0 and percentile([1.0, 2.0], 1) == 1.0


def test_measures_min_rtt_at_the_minimum_limit_first() -> None:
    clock = FakeClock(0.0)
    controller = GradientController(CONFIG, clock.now())
    assert controller.state == MEASURING and int(controller.limit) == 2
    assert controller.try_acquire(clock.now()) and controller.try_acquire(clock.now())
    assert not controller.try_acquire(clock.now()) and controller.rejected == 1
    controller.release(0.010, clock.now())
    controller.release(0.010, clock.now())
    run(controller, clock, 0.010, 3)
    assert controller.state == ADJUSTING and controller.min_rtt == pytest.approx(0.010)


def test_limit_grows_while_latency_stays_at_min_rtt_and_shrinks_when_it_rises() -> None:
    clock = FakeClock(0.0)
    controller = GradientController(CONFIG, clock.now())
    run(controller, clock, 0.010, 5)
    limits = []
    for _ in range(12):
        run(controller, clock, 0.010, 10)  # 100 ms: one window
        limits.append(int(controller.limit))
    assert limits[:5] == [2, 4, 7, 12, 19]  # x 1.25 (the buffer) + sqrt: headroom to probe for more
    assert limits == sorted(limits) and limits[-1] == 100  # up to the cap
    for _ in range(3):
        run(controller, clock, 0.040, 3)  # queueing: 4x the min RTT
    assert int(controller.limit) < 100 / 2


def test_measures_again_after_the_interval_and_restores_the_limit() -> None:
    clock = FakeClock(0.0)
    controller = GradientController(CONFIG, clock.now())
    run(controller, clock, 0.010, 5)
    run(controller, clock, 0.010, 30)
    clock.advance(10.0)
    run(controller, clock, 0.010, 1)
    assert controller.state == MEASURING and int(controller.limit) == 2
    grown = controller._saved
    assert grown > 10
    run(controller, clock, 0.008, 5)
    assert controller.state == ADJUSTING and controller.limit == grown
    assert controller.min_rtt == pytest.approx(0.008)


def test_stuck_at_the_minimum_measures_again() -> None:
    clock = FakeClock(0.0)
    controller = GradientController(CONFIG, clock.now())
    run(controller, clock, 0.010, 5)
    for _ in range(5):
        run(controller, clock, 0.200, 1)  # every window 20x the min RTT
    assert controller.state == MEASURING


async def test_layer_refuses_over_the_limit_and_samples_only_successes() -> None:
    loop = asyncio.get_running_loop()
    controller = GradientController(CONFIG, loop.time())
    inner = Script([200], delay=0.01)
    layer = ConcurrencyLayer(inner, controller, "r", loop)
    first = [loop.create_task(layer(request())) for _ in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(ConcurrencyLimited) as refused:
        await layer(request())
    assert refused.value.status == 503 and refused.value.reason == "concurrency_limited"
    await asyncio.gather(*first)
    assert controller.in_flight == 0 and len(controller._samples) == 2
    failing = ConcurrencyLayer(Script([503]), controller, "r", loop)
    await failing(request())
    assert controller.in_flight == 0 and len(controller._samples) == 2
