"""The one backoff: exponential ceilings up to a cap, a fully jittered draw below the ceiling."""

from __future__ import annotations

import random

import pytest

from meshbatch.core.backoff import Backoff


def test_the_ceiling_doubles_per_retry_up_to_the_cap() -> None:
    backoff = Backoff(0.1, 2.0)
    assert [backoff.ceiling(n) for n in range(7)] == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    assert backoff.ceiling(10_000) == 2.0 and backoff.ceiling(-3) == 0.1


def test_the_delay_is_fully_jittered_below_the_ceiling() -> None:
    backoff = Backoff(0.1, 2.0, random.Random(1).random)
    for retry, cap in ((0, 0.1), (1, 0.2), (2, 0.4), (5, 2.0), (60, 2.0)):
        delays = [backoff.delay(retry) for _ in range(200)]
        assert all(0 <= d <= cap for d in delays)
        assert min(delays) < cap / 4 and max(delays) > cap * 3 / 4  # the whole range, not its upper half
        assert len(set(delays)) > 1


def test_the_random_source_is_injected() -> None:
    assert Backoff(1.0, 8.0, lambda: 0.0).delay(3) == 0.0
    assert Backoff(1.0, 8.0, lambda: 1.0).delay(2) == 4.0
    assert Backoff(1.0, 8.0, lambda: 0.5).delay(9) == 4.0


def test_from_milliseconds_and_bounds() -> None:
    backoff = Backoff.from_ms(25, None)
    assert (backoff.base, backoff.cap) == (0.025, 0.25)
    assert Backoff.from_ms(100, 30_000).cap == 30.0
    with pytest.raises(ValueError):
        Backoff(0, 1)
    with pytest.raises(ValueError):
        Backoff(2, 1)


def test_the_retry_decision_counts_the_retries_left() -> None:
    backoff = Backoff(1.0, 8.0, lambda: 1.0)
    assert [backoff.retry(n, 3) for n in range(5)] == [1.0, 2.0, 4.0, None, None]
    assert backoff.retry(0, 0) is None
