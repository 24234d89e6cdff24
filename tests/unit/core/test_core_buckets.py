"""The one token bucket and its keyed, bounded set, on a fake clock."""

from __future__ import annotations

import pytest

from meshbatch.clock import FakeClock
from meshbatch.core.buckets import KeyedBuckets, TokenBucket


def test_a_bucket_starts_full_refills_at_its_rate_and_saves_at_most_its_burst() -> None:
    clock = FakeClock(0.0)
    bucket = TokenBucket(rate=4, burst=2, now=clock.now())
    assert [bucket.try_take(clock.now()) for _ in range(3)] == [0.0, 0.0, 0.25]
    assert bucket.tokens == 0.0  # a refused try takes nothing
    clock.advance(0.125)
    assert bucket.wait(clock.now()) == 0.125
    clock.advance(100)
    assert bucket.wait(clock.now(), 2) == 0.0 and bucket.wait(clock.now(), 3) == 0.25
    bucket.take(clock.now(), 2)
    assert bucket.tokens == 0.0 and bucket.try_take(clock.now()) == 0.25


def test_time_going_backwards_adds_nothing() -> None:
    bucket = TokenBucket(rate=1, burst=1, now=10.0)
    assert bucket.try_take(10.0) == 0.0
    assert bucket.try_take(5.0) == 1.0 and bucket.at == 10.0


def test_bounds() -> None:
    for rate, burst in ((0, 1), (1, 0.5)):
        with pytest.raises(ValueError):
            TokenBucket(rate, burst, 0.0)
    with pytest.raises(ValueError):
        KeyedBuckets(1, 1, 0)


def test_keyed_buckets_keep_the_most_recently_used() -> None:
    keyed: KeyedBuckets[str] = KeyedBuckets(rate=1.0, burst=1, max_keys=2)
    assert keyed.try_take("a", 0.0) == 0.0 and keyed.try_take("a", 0.0) == 1.0
    assert keyed.try_take("b", 0.0) == 0.0
    keyed.bucket("a", 0.0)  # "a" used last: "b" goes first
    assert keyed.try_take("c", 0.0) == 0.0
    assert len(keyed) == 2 and "a" in keyed and "b" not in keyed
    assert keyed.try_take("a", 0.0) == 1.0  # still empty: kept
    assert keyed.try_take("b", 0.0) == 0.0  # dropped, back with a full bucket
