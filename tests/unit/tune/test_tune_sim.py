"""The batcher simulation behind `meshbatch tune`: deterministic, and the dispatcher's rules."""

from __future__ import annotations

import pytest

from meshbatch.tools.tune.sim import CostModel, SimPolicy, percentile, simulate

FLAT = CostModel(0.010, 0.0)  # every batch takes 10 ms


def test_an_idle_upstream_never_waits_for_a_timer() -> None:
    arrivals = [i * 0.050 for i in range(10)]  # far apart: each goes alone at the end of its tick
    result = simulate(arrivals, SimPolicy(64, 0.0, 1), FLAT, tick=0.0001)
    assert result.sizes == [1] * 10
    assert max(result.latencies) == pytest.approx(0.0101)


def test_batches_grow_while_every_slot_is_busy() -> None:
    arrivals = [i * 0.001 for i in range(31)]  # 1 ms apart, 10 ms per batch, one slot
    result = simulate(arrivals, SimPolicy(64, 0.0, 1), FLAT, tick=0.0)
    assert result.sizes[0] == 1
    assert result.sizes[1:3] == [10, 10]
    assert sum(result.sizes) == 31 and len(result.latencies) == 31


def test_the_size_cap_and_more_slots() -> None:
    arrivals = [0.0] * 100
    capped = simulate(arrivals, SimPolicy(8, 0.0, 1), FLAT, tick=0.0)
    assert capped.sizes == [8] * 12 + [4]
    wide = simulate(arrivals, SimPolicy(8, 0.0, 4), FLAT, tick=0.0)
    assert max(wide.latencies) < max(capped.latencies)


def test_a_hold_trades_latency_for_bigger_batches() -> None:
    arrivals = [i * 0.001 for i in range(100)]
    quick = simulate(arrivals, SimPolicy(64, 0.0, 4), FLAT)
    held = simulate(arrivals, SimPolicy(64, 0.005, 4), FLAT)
    assert sum(held.sizes) / len(held.sizes) > sum(quick.sizes) / len(quick.sizes)
    assert percentile(held.latencies, 0.5) > percentile(quick.latencies, 0.5)


def test_callers_who_cannot_make_their_deadline_expire() -> None:
    arrivals = [0.0] * 50
    result = simulate(arrivals, SimPolicy(5, 0.0, 1, timeout=0.035), FLAT, tick=0.0)
    assert result.expired > 0
    assert len(result.latencies) + result.expired == 50
    assert max(result.latencies) <= 0.035 + 1e-9


def test_the_same_seed_gives_the_same_replay() -> None:
    noisy = CostModel(0.005, 0.0001, (-0.002, 0.0, 0.001, 0.010))
    arrivals = [i * 0.0007 for i in range(500)]
    one = simulate(arrivals, SimPolicy(32, 0.001, 2), noisy, seed=7)
    two = simulate(arrivals, SimPolicy(32, 0.001, 2), noisy, seed=7)
    other = simulate(arrivals, SimPolicy(32, 0.001, 2), noisy, seed=8)
    assert one.latencies == two.latencies and one.sizes == two.sizes
    assert one.latencies != other.latencies


def test_invalid_policies_are_refused() -> None:
    with pytest.raises(ValueError):
        SimPolicy(0, 0.0, 1)
    with pytest.raises(ValueError):
        SimPolicy(1, -1.0, 1)
