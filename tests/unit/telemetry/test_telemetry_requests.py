"""Answers counted by route and status: the statuses of the common range in a list, the others apart, all of
them the same in the metrics, `count` and the dashboard's `by_route`."""

from __future__ import annotations

from meshbatch.http.message import Request, Response
from meshbatch.telemetry.metrics import Registry
from meshbatch.telemetry.requests import RequestStats
from testbed.proxy import metric_value


def test_every_status_is_counted_whatever_its_range() -> None:
    registry = Registry()
    stats = RequestStats("main", registry)
    answers = {200: 3, 503: 2, 599: 1, 600: 1, 999: 2, 0: 1}
    for route in ("a", "b"):
        for status, n in answers.items():
            for _ in range(n):
                request = Request(b"GET", b"/", [])
                request.route = route
                stats(request, Response(status), 0.002)
    text = registry.render().decode()
    for route in ("a", "b"):
        for status, n in answers.items():
            assert stats.count(route, status) == n
            assert metric_value(text, "meshbatch_requests_total", route=route, status=str(status)) == n
        statuses, histogram = stats.by_route()[route]
        assert statuses == dict(sorted(answers.items()))
        assert histogram is not None and histogram.count == sum(answers.values())
    assert stats.count("a", 404) == 0 and stats.count("none", 200) == 0


def test_a_histogram_buckets_every_value_as_bisect_left_does() -> None:
    import bisect
    import math
    import random

    from meshbatch.telemetry.histogram import DELIVERY_BUCKETS, LATENCY_BUCKETS, SIZE_BUCKETS, Histogram

    rng = random.Random(5)
    for bounds in (LATENCY_BUCKETS, SIZE_BUCKETS, DELIVERY_BUCKETS, (1.0,)):
        values = [*bounds, *(b * 1.0000001 for b in bounds), 0.0, -1.0, math.inf, math.nan, 10**6]
        values += [rng.uniform(0, 2 * bounds[-1]) for _ in range(300)] + [rng.choice(bounds) for _ in range(50)]
        histogram = Histogram(bounds)
        expected = [0] * (len(bounds) + 1)
        for value in values:
            histogram.observe(value)
            expected[bisect.bisect_left(bounds, value)] += 1
        assert histogram.counts == expected
        assert histogram.bounds == tuple(bounds)  # (labels unchanged: ints stay ints)
