"""The dashboard's history: rates from counters, windowed percentiles from histogram deltas, resets."""

from __future__ import annotations

import pytest

from meshbatch.telemetry.series import Hist, Reading, Series, point, quantile

BOUNDS = (1.0, 2.0, 4.0, 8.0)


def _reading(items: float, counts: tuple[int, ...], queued: float = 0.0) -> Reading:
    return Reading({"items": items}, {"queued": queued},
                   {"size": Hist(BOUNDS, counts, sum(c * b for c, b in zip(counts, (*BOUNDS, 8.0), strict=True)))})


def test_quantile_interpolates_within_the_bucket() -> None:
    assert quantile(BOUNDS, [0, 10, 0, 0, 0], 0.5) == pytest.approx(1.5)
    assert quantile(BOUNDS, [10, 0, 0, 0, 0], 0.99) == pytest.approx(0.99)
    assert quantile(BOUNDS, [0, 0, 0, 0, 3], 0.5) == 8.0  # the overflow bucket reports the last bound
    assert quantile(BOUNDS, [0, 0, 0, 0, 0], 0.5) is None


def test_a_point_has_rates_windowed_percentiles_and_gauges() -> None:
    before = _reading(100, (5, 0, 0, 0, 0))
    now = _reading(300, (5, 0, 10, 0, 0), queued=7)
    figures = point(now, before, 2.0)
    assert figures["items_per_s"] == 100.0
    assert figures["size_p50"] == pytest.approx(3.0)  # only the 10 new batches, all in (2, 4]
    assert figures["queued"] == 7


def test_counters_that_go_back_count_from_zero() -> None:
    figures = point(_reading(5, (1, 0, 0, 0, 0)), _reading(100, (9, 0, 0, 0, 0)), 1.0)
    assert figures["items_per_s"] == 5.0
    assert figures["size_p50"] == pytest.approx(0.5)


def test_series_keeps_points_after_a_sequence_and_a_window() -> None:
    series = Series(capacity=3)
    assert series.sample(0.0, {"r": _reading(0, (0, 0, 0, 0, 0))}) is None
    for second in range(1, 6):
        series.sample(float(second), {"r": _reading(second * 10, (second, 0, 0, 0, 0))})
    assert [p["seq"] for p in series.since(0)] == [3, 4, 5]
    assert [p["seq"] for p in series.since(4)] == [5]
    window = series.window("r", "size", 2.0)
    assert window is not None and window[1][0] == 2  # 5 - 3 batches in the last two seconds
    assert series.window("missing", "size", 2.0) is None


def test_observe_many_counts_as_many_observations() -> None:
    from meshbatch.telemetry.histogram import Histogram

    one, many = Histogram(BOUNDS), Histogram(BOUNDS)
    for value, n in ((0.5, 3), (3.0, 2), (9.0, 1)):
        for _ in range(n):
            one.observe(value)
        many.observe_many(value, n)
    assert (many.counts, many.count, many.sum) == (one.counts, one.count, one.sum) == ([3, 0, 2, 0, 1], 6, 16.5)
