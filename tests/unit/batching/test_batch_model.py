import math
import random

import pytest

from meshbatch.batching.adaptive import AdaptiveController
from meshbatch.batching.model import MIN_SAMPLES, LatencyModel


def test_fit_recovers_a_line():
    model = LatencyModel(window=64)
    for n in range(1, 41):
        model.observe(n, 0.002 + 0.00002 * n)
    assert model.ready
    assert model.a == pytest.approx(0.002, rel=1e-6) and model.b == pytest.approx(0.00002, rel=1e-6)
    assert model.residual == pytest.approx(0.0, abs=1e-9)
    assert model.expected(10) == pytest.approx(0.0022)


def test_tail_uses_a_high_quantile_of_residuals_not_the_mean():
    model = LatencyModel(window=200, quantile=0.99)
    rng = random.Random(7)
    for i in range(200):
        n = rng.randint(1, 64)
        slow = 0.050 if i % 50 == 0 else 0.0  # 2% of batches are 50 ms slower
        model.observe(n, 0.002 + 0.00002 * n + slow)
    model.refit()
    assert model.tail(10) - model.expected(10) > 0.040
    assert model.expected(10) < 0.002 + 0.0002 + 0.005  # the fit itself stays near the typical batch


def test_constant_sizes_fall_back_to_a_constant_and_negative_slopes_clamp():
    model = LatencyModel(window=16)
    for _ in range(10):
        model.observe(8, 0.004)
    assert (model.a, model.b) == (pytest.approx(0.004), 0.0)
    falling = LatencyModel(window=16)
    for n in range(1, 12):
        falling.observe(n, 0.010 - 0.0005 * n)
    assert falling.b == 0.0 and falling.a > 0


def test_window_forgets_old_batches():
    model = LatencyModel(window=16)
    for n in range(1, 17):
        model.observe(n, 1.0)
    for n in range(1, 17):
        model.observe(n, 0.001 * n)
    model.refit()
    assert model.a == pytest.approx(0.0, abs=1e-9) and model.b == pytest.approx(0.001)


def test_bad_samples_are_ignored_and_empty_model_predicts_zero():
    model = LatencyModel()
    model.observe(0, 1.0)
    model.observe(3, -1.0)
    model.observe(3, math.nan)
    assert model.samples == 0 and model.expected(100) == 0.0 and model.tail(100) == 0.0
    with pytest.raises(ValueError):
        LatencyModel(window=1)


def controller(model, **kw):
    args = {"target": 0.010, "window": 64, "min_wait": 0.0, "max_wait": 0.050, "max_items": 512,
            "max_in_flight": 4}
    args.update(kw)
    return AdaptiveController(model, **args)


def trained(a=0.002, b=0.00002):
    model = LatencyModel(window=64)
    for n in range(1, 65):
        model.observe(n, a + b * n)
    return model


def drive(ctl, rate, seconds=1.0, steps=10):
    now, arrivals = 0.0, 0
    ctl.update(now, arrivals)
    for _ in range(steps):
        now += seconds / steps
        arrivals += int(rate * seconds / steps)
        ctl.update(now, arrivals)


def test_before_the_model_is_ready_it_holds_min_wait_and_caps_at_max_items():
    model = LatencyModel()
    for n in range(MIN_SAMPLES - 1):
        model.observe(n + 1, 0.01)
    ctl = controller(model, min_wait=0.001)
    drive(ctl, 10_000)
    assert ctl.hold == 0.001 and ctl.cap == 512


def test_busy_upstream_spends_the_budget_on_bigger_batches_within_target():
    model = trained()
    ctl = controller(model)
    drive(ctl, 100_000)  # 100k items/s: the upstream is busy
    assert ctl.rate == pytest.approx(100_000, rel=0.01)
    assert ctl.utilisation >= 0.5
    n = ctl.cap
    fill = (n - 1) / ctl.rate
    assert fill + model.tail(n) - model.expected(1) <= ctl.target + 1e-9
    assert n > 100 and ctl.hold == pytest.approx(fill, rel=0.2) and 0 < ctl.hold <= 0.050
    # it cannot keep up with smaller batches: the cap is never below what the rate needs
    assert 4 * n / model.expected(n) >= 0.8 * 100_000


def test_idle_upstream_does_not_hold():
    ctl = controller(trained())
    drive(ctl, 200)
    assert ctl.hold == 0.0 and ctl.utilisation < 0.5


def test_overload_raises_the_cap_above_the_latency_choice():
    model = trained(a=0.002, b=0.0)
    ctl = controller(model, target=0.0005)  # a budget too small for any wait
    drive(ctl, 50_000)
    need = math.ceil(50_000 * 0.002 / (0.8 * 4))
    assert ctl.cap >= need


def test_feedback_shrinks_the_budget_when_the_observed_p99_is_over_target():
    ctl = controller(trained(), window=32)
    for _ in range(32):
        ctl.observe_added(0.030)
    ctl.update(0.0, 0)
    assert ctl.scale == pytest.approx(0.8) and ctl.last_p99 == pytest.approx(0.030)
    for _ in range(32):
        ctl.observe_added(0.001)
    ctl.update(0.1, 0)
    assert ctl.scale == pytest.approx(0.88)
    summary = ctl.summary()
    assert summary["target_p99_ms"] == 10.0 and summary["size_cap"] == ctl.cap


def test_rate_meter_smooths_and_decays_when_idle():
    from meshbatch.batching.stats import RateMeter

    meter = RateMeter(period=1.0)
    assert meter.value(0.0) == 0.0
    meter.add(5, 0.0)  # marks the start
    meter.add(100, 1.0)
    assert meter.value(1.0) == pytest.approx(100.0)
    meter.add(300, 2.0)
    assert meter.value(2.0) == pytest.approx(200.0)  # half old, half new after one period
    assert meter.value(12.0) < 1.0  # ten idle seconds
    assert meter.total == 405
