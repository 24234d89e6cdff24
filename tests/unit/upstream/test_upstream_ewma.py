"""Peak-EWMA: the estimate's arithmetic, the failure penalty, and the balancer's choices in a simulation
driven by a fake clock (no sleeping)."""

from __future__ import annotations

import heapq
import math
import random

from upstream_support import counts, endpoint, endpoints

from meshbatch.clock import FakeClock
from meshbatch.config.model import LbConfig
from meshbatch.upstream.balancers.ewma import PeakEwma
from meshbatch.upstream.endpoint import Endpoint
from meshbatch.upstream.endpoint_set import EndpointSet


def test_a_slower_round_trip_is_taken_at_once() -> None:
    e = endpoint("a:1")
    e.observe(200, 0.01, 100.010)
    assert math.isclose(e.rtt, 0.010)
    e.observe(200, 0.05, 100.050)
    assert math.isclose(e.rtt, 0.050)


def test_a_faster_round_trip_is_averaged_in_by_elapsed_time() -> None:
    e = endpoint("a:1")
    e.decay = 10.0
    e.observe(200, 0.1, 100.1)
    e.observe(200, 0.01, 110.1)  # 10 s later: weight exp(-1) on the old estimate
    w = math.exp(-1)
    assert math.isclose(e.rtt, 0.1 * w + 0.01 * (1 - w))


def test_cost_decays_when_idle_and_grows_with_in_flight_requests() -> None:
    e = endpoint("a:1")
    e.decay = 10.0
    e.observe(200, 0.02, 0.02)
    assert math.isclose(e.cost(0.02), 0.02)
    e.active = 3
    assert math.isclose(e.cost(0.02), 0.08)
    e.active = 0
    assert math.isclose(e.cost(10.02), 0.02 * math.exp(-1))


def test_weight_divides_the_cost() -> None:
    e = endpoint("a:1", weight=4)
    e.observe(200, 0.02, 0.02)
    assert math.isclose(e.cost(0.02), 0.005)


def test_failures_and_429_set_a_penalty_that_fades() -> None:
    e = endpoint("a:1")
    e.penalty_value, e.penalty_decay = 1.0, 2.0
    e.observe(503, 0.0005, 0.0005)  # a fast failure
    assert math.isclose(e.cost(0.0005), 1.0)  # not 0.5 ms: failing fast does not look fast
    assert math.isclose(e.cost(2.0005), math.exp(-1))
    f = endpoint("b:1")
    f.observe(429, 0.001, 0.001)
    assert f.cost(0.001) >= 1.0
    g = endpoint("c:1")
    g.observe(404, 0.001, 0.001)  # a client error is an answer, not a failure
    assert g.cost(0.001) < 0.01


def test_default_rtt_until_a_first_answer() -> None:
    e = endpoint("a:1")
    e.rtt = 0.03
    assert math.isclose(e.cost(5.0), 0.03)  # no decay before any sample


def simulate(hosts: EndpointSet, service: dict[Endpoint, float], concurrency: int, requests: int,
             failing: Endpoint | None = None, seed: int = 1) -> tuple[dict[str, int], list[float]]:
    """A closed loop of `concurrency` callers on a fake clock; each pick starts an exchange that ends after
    the endpoint's service time (with a little jitter). Returns picks per endpoint and latencies."""
    clock = FakeClock(0.0)
    rng = random.Random(seed)
    balancer = PeakEwma(hosts, LbConfig(), rng=random.Random(seed), now=clock.now)
    pending: list[tuple[float, int, Endpoint, float]] = []
    picks: list[Endpoint | None] = []
    latencies: list[float] = []
    n = 0

    def send() -> None:
        nonlocal n
        e = balancer.pick()
        assert e is not None
        picks.append(e)
        e.active += 1
        start = clock.now()
        heapq.heappush(pending, (start + service[e] * rng.uniform(0.8, 1.2), n, e, start))
        n += 1

    for _ in range(concurrency):
        send()
    while len(picks) < requests:
        end, _, e, start = heapq.heappop(pending)
        clock.advance(end - clock.now())
        e.active -= 1
        e.observe(500 if e is failing else 200, end - start, end)
        latencies.append(end - start)
        send()
    return counts(picks), latencies


def test_a_ten_times_slower_endpoint_gets_under_ten_percent() -> None:
    hosts = endpoints(3)
    slow = hosts.all[2]
    service = {hosts.all[0]: 0.001, hosts.all[1]: 0.001, slow: 0.010}
    for concurrency in (1, 4, 16):
        for e in hosts.all:
            e.rtt, e.rtt_at, e.active = 0.03, 0.0, 0
        seen, latencies = simulate(hosts, service, concurrency, 20000)
        share = seen.get(slow.address, 0) / 20000
        assert share < 0.10, (concurrency, share)
        latencies.sort()
        assert latencies[int(len(latencies) * 0.99)] < 0.0025, concurrency  # p99 stays a fast one's


def test_an_endpoint_that_fails_fast_is_avoided() -> None:
    hosts = endpoints(3)
    bad = hosts.all[0]
    service = {hosts.all[0]: 0.0001, hosts.all[1]: 0.002, hosts.all[2]: 0.002}
    seen, _ = simulate(hosts, service, 4, 20000, failing=bad)
    assert seen.get(bad.address, 0) / 20000 < 0.02


def test_a_once_slow_endpoint_is_probed_again_later() -> None:
    hosts = endpoints(2)
    slow, fast = hosts.all
    clock = FakeClock(0.0)
    balancer = PeakEwma(hosts, LbConfig(), rng=random.Random(1), now=clock.now)
    slow.observe(200, 0.05, 0.050)
    fast.observe(200, 0.005, 0.005)
    assert balancer.pick() is fast
    clock.advance(10.0)
    fast.observe(200, 0.005, 10.0)  # the fast one stays busy and measured; the slow one decays untouched
    clock.advance(30.0)
    fast.observe(200, 0.005, 40.0)
    assert balancer.pick() is slow


def test_choice_count_of_all_compares_every_endpoint_once() -> None:
    hosts = endpoints(3)
    a, b, c = hosts.all
    a.observe(200, 0.004, 0.004)
    b.observe(200, 0.002, 0.002)
    c.observe(200, 0.02, 0.020)
    b.active = 2  # 0.002 x 3 > 0.004 x 1: a is the cheapest now
    balancer = PeakEwma(hosts, LbConfig(choice_count=3), rng=random.Random(7), now=lambda: 0.004)
    assert {balancer.pick() for _ in range(50)} == {a}  # random draws with repeats could miss a; a full scan never
    b.active = 0
    assert {balancer.pick() for _ in range(50)} == {b}
