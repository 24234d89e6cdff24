"""Targets (clusters and subsets of their endpoints), weighted splits, and picking another endpoint on retry."""

from __future__ import annotations

from collections import Counter

from layers_support import cluster, draws, target

from meshbatch.layers.split import Split

META = [{"address": "127.0.0.1:1", "metadata": {"version": "v1"}},
        {"address": "127.0.0.1:2", "metadata": {"version": "v1"}},
        {"address": "127.0.0.1:3", "metadata": {"version": "v2", "zone": "b"}}]


async def test_subset_picks_only_matching_endpoints_and_follows_availability() -> None:
    c = cluster("c", *META)
    v1 = target(c, {"version": "v1"})
    assert {v1.pick(None, (), 0.0).address for _ in range(6)} == {"127.0.0.1:1", "127.0.0.1:2"}  # type: ignore[union-attr]
    v2 = target(c, {"version": "v2", "zone": "b"})
    assert v2.label == "c{version=v2,zone=b}"
    third = c.hosts.all[2]
    assert v2.pick(None, (), 0.0) is third
    third.set_down(1, True)
    assert v2.pick(None, (), 0.0) is None  # no fallback: nothing
    assert target(c, {"version": "v2"}, fallback=True).pick(None, (), 0.0) in c.hosts.all[:2]
    third.set_down(1, False)
    assert v2.pick(None, (), 0.0) is third


async def test_subset_view_follows_membership_changes() -> None:
    from meshbatch.config.model import EndpointSpec

    c = cluster("c", *META)
    v2 = target(c, {"version": "v2"})
    assert [e.address for e in v2.members()] == ["127.0.0.1:3"]
    c.set_endpoints([EndpointSpec(address="127.0.0.1:4", metadata={"version": "v2"})])
    assert [e.address for e in v2.members()] == ["127.0.0.1:4"]
    assert v2.pick(None, (), 0.0) is c.hosts.all[0]


async def test_a_retry_avoids_the_endpoints_that_failed() -> None:
    c = cluster()
    t = target(c)
    first = t.pick(None, (), 0.0)
    assert first is not None
    for _ in range(5):
        assert t.pick(None, [first], 0.0) is not first
    a, b, d = c.hosts.all
    assert t.pick(None, [a, b], 0.0) is d
    assert t.pick(None, [a, b, d], 0.0) is not None  # all failed: the balancer's choice again


async def test_hashing_balancer_retries_elsewhere_too() -> None:
    c = cluster("h", "127.0.0.1:1", "127.0.0.1:2", lb="ring_hash")
    t = target(c)
    home = t.pick(b"tenant-1", (), 0.0)
    assert home is not None and t.pick(b"tenant-1", (), 0.0) is home
    assert t.pick(b"tenant-1", [home], 0.0) is not home


async def test_split_by_weight_and_by_key() -> None:
    a, b = target(cluster("a")), target(cluster("b"))
    split = Split([(a, 90), (b, 10)], rng=draws(*(i / 1000 for i in range(1000))))
    counts = Counter(split.choose().cluster.name for _ in range(1000))
    assert counts == {"a": 900, "b": 100}
    keyed = Split([(a, 50), (b, 50)], header=b"x-user")
    assert len({keyed.choose(b"alice").cluster.name for _ in range(20)}) == 1
    sides = Counter(keyed.choose(b"user-%d" % i).cluster.name for i in range(1000))
    assert 400 < sides["a"] < 600
    assert Split([(a, 0), (b, 5)]).choose() is b
    assert Split([(a, 0)]).choose() is a
