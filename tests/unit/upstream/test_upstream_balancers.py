"""Round robin, least request and random: shares, weights, and skipping endpoints that are down."""

from __future__ import annotations

import random

import pytest
from upstream_support import counts, endpoints

from meshbatch.config.model import LbConfig
from meshbatch.upstream.balancers import BALANCERS
from meshbatch.upstream.balancers.least_request import LeastRequest
from meshbatch.upstream.balancers.random_pick import RandomPick
from meshbatch.upstream.balancers.round_robin import RoundRobin
from meshbatch.upstream.endpoint import EJECTED, FAILED_ACTIVE_CHECK


def test_registry_names() -> None:
    for name in ("round_robin", "least_request", "random", "ewma", "ring_hash", "maglev"):
        assert name in BALANCERS


def test_round_robin_cycles_in_order() -> None:
    hosts = endpoints(3)
    rr = RoundRobin(hosts)
    picks = [rr.pick() for _ in range(6)]
    assert [e.address[-6:] if e else None for e in picks] == [
        "1:8080", "2:8080", "3:8080", "1:8080", "2:8080", "3:8080"]


def test_smooth_weighted_round_robin_interleaves() -> None:
    hosts = endpoints(3, [5, 1, 1])
    rr = RoundRobin(hosts)
    picks = [rr.pick() for _ in range(7)]
    assert counts(picks) == {"10.0.0.1:8080": 5, "10.0.0.2:8080": 1, "10.0.0.3:8080": 1}
    # smooth: the heavy endpoint never takes more than 3 turns in a row (nginx's a a b a c a a)
    run = longest = 0
    for e in picks:
        run = run + 1 if e is hosts.all[0] else 0
        longest = max(longest, run)
    assert longest <= 3


@pytest.mark.parametrize("name", ["round_robin", "least_request", "random", "ewma", "ring_hash", "maglev"])
def test_every_balancer_skips_down_endpoints_and_returns_none_when_all_are(name: str) -> None:
    hosts = endpoints(3)
    balancer = BALANCERS.get(name)(hosts, LbConfig(table_size=101))
    hosts.all[0].set_down(EJECTED, True)
    hosts.all[1].set_down(FAILED_ACTIVE_CHECK, True)
    for i in range(50):
        assert balancer.pick(b"key-%d" % i) is hosts.all[2]
    hosts.all[2].set_down(EJECTED, True)
    assert balancer.pick(b"k") is None
    assert balancer.pick(None) is None
    hosts.all[0].set_down(EJECTED, False)
    assert balancer.pick(b"k") is hosts.all[0]


def test_least_request_prefers_the_endpoint_with_fewer_in_flight() -> None:
    hosts = endpoints(2)
    lr = LeastRequest(hosts, rng=random.Random(1))
    hosts.all[0].active = 5
    assert all(lr.pick() is hosts.all[1] for _ in range(20))


def test_least_request_p2c_spreads_load_among_idle_endpoints() -> None:
    hosts = endpoints(4)
    lr = LeastRequest(hosts, rng=random.Random(2))
    seen = counts([lr.pick() for _ in range(4000)])
    assert len(seen) == 4 and min(seen.values()) > 700


def test_least_request_is_weight_aware_when_idle_and_under_load() -> None:
    hosts = endpoints(2, [3, 1])
    lr = LeastRequest(hosts, rng=random.Random(3))
    seen = counts([lr.pick() for _ in range(8000)])
    assert 0.70 < seen["10.0.0.1:8080"] / 8000 < 0.80
    hosts.all[0].active = 8  # 3/9 against 1/1: the light idle one is now preferred
    seen = counts([lr.pick() for _ in range(8000)])
    assert seen["10.0.0.2:8080"] > seen["10.0.0.1:8080"]


def test_least_request_choice_count() -> None:
    hosts = endpoints(5)
    for i, e in enumerate(hosts.all):
        e.active = i
    p2c = LeastRequest(hosts, rng=random.Random(4))
    p5c = LeastRequest(hosts, LbConfig(choice_count=5), rng=random.Random(4))
    two = counts([p2c.pick() for _ in range(2000)])
    five = counts([p5c.pick() for _ in range(2000)])
    assert five["10.0.0.1:8080"] > 1.5 * two["10.0.0.1:8080"]
    assert "10.0.0.5:8080" not in two  # the busiest never wins a comparison


def test_random_is_weighted_and_follows_availability() -> None:
    hosts = endpoints(3, [1, 2, 7])
    rp = RandomPick(hosts, rng=random.Random(5))
    seen = counts([rp.pick() for _ in range(10000)])
    assert 0.65 < seen["10.0.0.3:8080"] / 10000 < 0.75
    hosts.all[2].set_down(EJECTED, True)
    seen = counts([rp.pick() for _ in range(3000)])
    assert set(seen) == {"10.0.0.1:8080", "10.0.0.2:8080"}
    assert 0.6 < seen["10.0.0.2:8080"] / 3000 < 0.73
