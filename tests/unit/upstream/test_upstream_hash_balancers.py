"""Ring hash and Maglev: a key sticks to one endpoint, moves only when that endpoint leaves or fails, and
endpoints own shares in proportion to their weights."""

from __future__ import annotations

import random

import pytest
from upstream_support import counts, endpoint, endpoints

from meshbatch.config.model import LbConfig
from meshbatch.upstream.balancers import BALANCERS
from meshbatch.upstream.balancers.hashing import hash64
from meshbatch.upstream.balancers.maglev import Maglev, build_table
from meshbatch.upstream.balancers.ring_hash import RingHash, points_per_weight
from meshbatch.upstream.endpoint import EJECTED
from meshbatch.upstream.endpoint_set import EndpointSet

KEYS = [b"tenant-%d" % i for i in range(3000)]
CONFIG = LbConfig(table_size=4099, ring_size=1024)


def test_hash64_is_stable_across_processes() -> None:
    assert hash64(b"tenant-1") == hash64(b"tenant-1")
    assert hash64(b"tenant-1") != hash64(b"tenant-1", 1)
    assert hash64(b"tenant-1") == 0xF30EDD052AF1F41C  # the same value in every process (not salted per run)


@pytest.mark.parametrize("name", ["ring_hash", "maglev"])
def test_same_key_same_endpoint(name: str) -> None:
    hosts = endpoints(5)
    balancer = BALANCERS.get(name)(hosts, CONFIG)
    first = {k: balancer.pick(k) for k in KEYS}
    again = BALANCERS.get(name)(EndpointSet(hosts.all), CONFIG)  # another proxy, same endpoints
    assert all(again.pick(k) is first[k] for k in KEYS)


@pytest.mark.parametrize("name", ["ring_hash", "maglev"])
def test_a_failed_endpoint_moves_only_its_own_keys(name: str) -> None:
    hosts = endpoints(5)
    balancer = BALANCERS.get(name)(hosts, CONFIG)
    before = {k: balancer.pick(k) for k in KEYS}
    victim = hosts.all[2]
    victim.set_down(EJECTED, True)
    after = {k: balancer.pick(k) for k in KEYS}
    for k in KEYS:
        if before[k] is not victim:
            assert after[k] is before[k]
        else:
            assert after[k] is not victim and after[k] is not None
    moved = counts([after[k] for k in KEYS if before[k] is victim])
    assert len(moved) >= 3  # the victim's keys spread over the others, not all onto one
    victim.set_down(EJECTED, False)
    assert {k: balancer.pick(k) for k in KEYS} == before


@pytest.mark.parametrize("name", ["ring_hash", "maglev"])
def test_removing_an_endpoint_moves_few_other_keys(name: str) -> None:
    hosts = endpoints(5)
    full = BALANCERS.get(name)(hosts, CONFIG)
    before = {k: full.pick(k) for k in KEYS}
    smaller = EndpointSet(hosts.all[:4])
    balancer = BALANCERS.get(name)(smaller, CONFIG)
    stayed = sum(1 for k in KEYS if before[k] is not hosts.all[4] and balancer.pick(k) is before[k])
    kept = sum(1 for k in KEYS if before[k] is not hosts.all[4])
    assert stayed / kept > 0.9


@pytest.mark.parametrize("name", ["ring_hash", "maglev"])
def test_shares_follow_weights(name: str) -> None:
    hosts = endpoints(3, [1, 2, 5])
    balancer = BALANCERS.get(name)(hosts, CONFIG)
    seen = counts([balancer.pick(k) for k in KEYS * 2])
    total = len(KEYS) * 2
    assert 0.5 < seen["10.0.0.3:8080"] / total < 0.75
    assert seen["10.0.0.1:8080"] < seen["10.0.0.2:8080"] < seen["10.0.0.3:8080"]


@pytest.mark.parametrize("name", ["ring_hash", "maglev"])
def test_no_key_picks_at_random(name: str) -> None:
    hosts = endpoints(3)
    balancer = BALANCERS.get(name)(hosts, CONFIG)
    assert len(counts([balancer.pick(None) for _ in range(300)])) == 3


def test_maglev_table_is_balanced_and_full() -> None:
    members = endpoints(7).all
    table = build_table(members, 65537)
    assert -1 not in table
    per = counts([members[i] for i in table])
    assert max(per.values()) - min(per.values()) <= 1


def test_maglev_with_all_but_one_down_still_finds_it() -> None:
    hosts = endpoints(4)
    balancer = Maglev(hosts, CONFIG)
    for e in hosts.all[:3]:
        e.set_down(EJECTED, True)
    assert all(balancer.pick(k) is hosts.all[3] for k in KEYS[:50])


def test_ring_size_scales_with_the_lightest_weight() -> None:
    hosts = EndpointSet([endpoint("a:1", 1), endpoint("b:1", 9)])
    ring = RingHash(hosts, LbConfig(ring_size=1024), rng=random.Random(1))
    assert len(ring) == 128 * 10  # 1024 / 10 weight units, rounded up to a power of two
    assert points_per_weight(1024, 5) == points_per_weight(1024, 4) == 256  # one leaving moves no other point
