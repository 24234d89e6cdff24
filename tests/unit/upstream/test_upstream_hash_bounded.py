"""Bounded loads on ring_hash and Maglev (`lb_config.hash_balance_factor`): a key stays on its endpoint while that
endpoint's requests in flight are within the bound, passes on along the ring or table past it, and falls back
to the first endpoint found when every live one is over; the factor is validated."""

from __future__ import annotations

import random
from typing import Any

import pytest
from pydantic import ValidationError
from upstream_support import endpoints

from meshbatch.config.model import Cluster, LbConfig
from meshbatch.upstream.balancers import BALANCERS
from meshbatch.upstream.balancers.bounded import Bound
from meshbatch.upstream.endpoint import EJECTED

KEYS = [b"tenant-%d" % i for i in range(300)]
HASHED = ["ring_hash", "maglev"]


def _config(factor: int | None) -> LbConfig:
    return LbConfig(table_size=4099, ring_size=1024, hash_balance_factor=factor)


@pytest.mark.parametrize("name", HASHED)
def test_idle_endpoints_keep_every_key_home(name: str) -> None:
    hosts = endpoints(3)
    plain = BALANCERS.get(name)(hosts, _config(None))
    bounded = BALANCERS.get(name)(hosts, _config(125))
    assert all(bounded.pick(k) is plain.pick(k) for k in KEYS)


@pytest.mark.parametrize("name", HASHED)
def test_a_loaded_endpoint_passes_its_keys_on_and_takes_them_back(name: str) -> None:
    hosts = endpoints(3)
    plain = BALANCERS.get(name)(hosts, _config(None))
    bounded = BALANCERS.get(name)(hosts, _config(125))
    home = {k: plain.pick(k) for k in KEYS}
    hot, *others = hosts.all
    hot.active, others[0].active, others[1].active = 40, 12, 12  # bound: ceil(1.25 x 65 / 3) = 28 in flight
    moved = [bounded.pick(k) for k in KEYS if home[k] is hot]
    assert moved and all(e is not hot for e in moved)
    assert all(bounded.pick(k) is home[k] for k in KEYS if home[k] is not hot)
    hot.active = 15  # 16 with the new one, within ceil(1.25 x 40 / 3) = 17: home again
    assert all(bounded.pick(k) is home[k] for k in KEYS)


@pytest.mark.parametrize("name", HASHED)
def test_without_the_factor_load_does_not_move_keys(name: str) -> None:
    hosts = endpoints(3)
    balancer = BALANCERS.get(name)(hosts, _config(None))
    home = {k: balancer.pick(k) for k in KEYS}
    hosts.all[0].active = 1000
    assert all(balancer.pick(k) is home[k] for k in KEYS)


@pytest.mark.parametrize("name", HASHED)
def test_a_hot_key_spills_onto_neighbours_not_everywhere(name: str) -> None:
    """One key sent 300 times without answers: its load spreads, each endpoint within the bound (+1)."""
    hosts = endpoints(5)
    balancer = BALANCERS.get(name)(hosts, _config(150))
    for _ in range(300):
        chosen = balancer.pick(b"hot")
        assert chosen is not None
        chosen.active += 1
    loads = sorted(e.active for e in hosts.all)
    assert sum(loads) == 300 and max(loads) <= 1.5 * 300 / 5 + 1


@pytest.mark.parametrize("name", HASHED)
def test_any_loads_and_weights_give_an_endpoint_within_the_bound_when_one_is(name: str) -> None:
    rng = random.Random(7)
    for _ in range(50):
        hosts = endpoints(4, weights=[rng.randint(1, 8) for _ in range(4)])
        for e in hosts.all:
            e.active = rng.randint(0, 60)
        balancer = BALANCERS.get(name)(hosts, _config(rng.choice([100, 125, 200])))
        factor = balancer._factor
        for key in KEYS[:20]:
            chosen = balancer.pick(key)
            assert chosen is not None
            if any(Bound(hosts.available, factor).fits(e) for e in hosts.all):
                assert Bound(hosts.available, factor).fits(chosen)


@pytest.mark.parametrize("name", HASHED)
def test_down_endpoints_are_skipped_under_the_bound(name: str) -> None:
    hosts = endpoints(3)
    balancer = BALANCERS.get(name)(hosts, _config(125))
    hosts.all[0].set_down(EJECTED, True)
    hosts.all[1].active = 100
    assert {balancer.pick(k) for k in KEYS} == {hosts.all[2]}
    hosts.all[2].set_down(EJECTED, True)
    assert {balancer.pick(k) for k in KEYS} == {hosts.all[1]}  # over the bound, but the only one in
    hosts.all[1].set_down(EJECTED, True)
    assert balancer.pick(b"k") is None


def test_bound_counts_the_new_request_and_the_weight() -> None:
    hosts = endpoints(2, weights=[1, 3])
    light, heavy = hosts.all
    light.active, heavy.active = 0, 3  # total 3 (+1): per weight 1.0 at factor 100
    bound = Bound(hosts.available, 100)
    assert bound.fits(light)  # 1 <= ceil(1.0 x 1)
    assert not bound.fits(heavy)  # 4 > ceil(1.0 x 3)
    assert bound.first is heavy and not bound.exhausted


@pytest.mark.parametrize("bad", [0, 99, 100_001, "x", 1.5])
def test_factor_out_of_range_is_refused(bad: Any) -> None:
    with pytest.raises(ValidationError, match="hash_balance_factor"):
        Cluster.model_validate({"name": "c", "endpoints": ["127.0.0.1:1"], "lb": "ring_hash",
                                "lb_config": {"hash_balance_factor": bad}})


def test_factor_is_read_from_the_cluster_config() -> None:
    cluster = Cluster.model_validate({"name": "c", "endpoints": ["127.0.0.1:1"], "lb": "maglev",
                                      "hash_key": "header:x-tenant", "lb_config": {"hash_balance_factor": 125}})
    assert cluster.lb_config.hash_balance_factor == 125
    assert Cluster.model_validate({"name": "c", "endpoints": ["127.0.0.1:1"]}).lb_config.hash_balance_factor is None
