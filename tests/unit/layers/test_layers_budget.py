"""Backoff and the retry budget: pure cores driven by explicit times (no sleeping)."""

from __future__ import annotations

import pytest

from meshbatch.clock import FakeClock
from meshbatch.config.model import Backoff as BackoffConfig
from meshbatch.config.model import RetryBudget as BudgetConfig
from meshbatch.core.backoff import Backoff
from meshbatch.upstream.budget import RetryBudget, SlidingCount


def test_backoff_is_fully_jittered_and_capped() -> None:
    backoff = Backoff.from_ms(BackoffConfig(base_ms=25).base_ms, None, rng=lambda: 1.0)
    assert [round(backoff.delay(n), 4) for n in range(6)] == [0.025, 0.05, 0.1, 0.2, 0.25, 0.25]  # cap 10 x base
    assert Backoff.from_ms(25, None, rng=lambda: 0.0).delay(3) == 0.0
    half = Backoff(0.01, 1.0, rng=lambda: 0.5)
    assert half.delay(2) == pytest.approx(0.02)
    assert half.ceiling(100) == 1.0  # no overflow for a large retry number


def test_backoff_rejects_a_cap_below_the_base() -> None:
    with pytest.raises(ValueError):
        Backoff(0.1, 0.05)


def test_sliding_count_forgets_what_left_the_window() -> None:
    clock = FakeClock(0.0)
    count = SlidingCount(10.0, slots=10)
    count.add(clock.now(), 5)
    clock.advance(4)
    count.add(clock.now(), 3)
    assert count.total(clock.now()) == 8
    clock.advance(6.5)  # the first 5 are 10.5 s old
    assert count.total(clock.now()) == 3
    clock.advance(20)
    assert count.total(clock.now()) == 0


def test_budget_floor_allows_retries_before_any_traffic() -> None:
    budget = RetryBudget(BudgetConfig(min_retries_per_second=1, window_ms=10_000))
    assert budget.available(0.0, in_flight=0) == 10  # 1 per second over the 10 s window


def test_budget_in_flight_limit_is_envoy_style() -> None:
    budget = RetryBudget(BudgetConfig(budget_percent=20, min_retry_concurrency=3, min_retries_per_second=100))
    for _ in range(3):
        assert budget.available(0.0, in_flight=5) > 0
        budget.withdraw(0.0)
        budget.begin()
    assert budget.available(0.0, in_flight=5) == 0  # max(3, 20% of 5) = 3 retries in flight
    assert budget.available(0.0, in_flight=20) == 100 * 10 - 3  # 20% of 20 = 4 > 3 in flight
    budget.end()
    assert budget.available(0.0, in_flight=5) > 0


def test_budget_bounds_amplification_under_sustained_failure() -> None:
    """Every request fails and asks for a retry: retries stay within 20% of requests plus the floor."""
    clock = FakeClock(0.0)
    budget = RetryBudget(BudgetConfig(budget_percent=20, min_retries_per_second=2, window_ms=10_000))
    requests = retries = 0
    for _ in range(10_000):  # 1000 requests a second for 10 s
        clock.advance(0.001)
        budget.deposit(clock.now())
        requests += 1
        if budget.available(clock.now(), in_flight=50):
            budget.withdraw(clock.now())
            retries += 1
    assert retries <= 0.2 * requests + 2 * 10
    assert retries >= 0.2 * requests * 0.9  # and the budget is actually usable
    assert (requests + retries) / requests <= 1.2 + 20 / requests


def test_budget_units_count_items() -> None:
    budget = RetryBudget(BudgetConfig(budget_percent=50, min_retries_per_second=0))
    budget.deposit(0.0, 64)  # a batch of 64 items
    assert budget.available(0.0, in_flight=1) == 32
    budget.withdraw(0.0, 30)
    assert budget.available(0.0, in_flight=1) == 2
