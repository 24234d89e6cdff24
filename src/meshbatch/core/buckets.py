"""Token buckets with an explicit `now` (pure): one bucket, or a bounded set of them by key.

One bucket type for every rate limit of the proxy: a route's request and item limits (layers/ratelimit.py),
a listener's connection and identity limits (security/guard.py). `rate` tokens are added each second, at most
`burst` are saved up; a bucket starts full. `wait(now, n)` says how long until `n` tokens are there;
`take(now, n)` takes them (the caller asked `wait` first, as when several limits are taken together, all or
none); `try_take(now)` does both for one token.

`KeyedBuckets` keeps one bucket per key, at most `max_keys`, the least recently used dropped first: a dropped
key starts again with a full bucket, so the cap bounds memory and never admits more than `burst` at once per key.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved; starts full."""

    __slots__ = ("at", "burst", "rate", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.at = now

    def _fill(self, now: float) -> None:
        if now > self.at:
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
            self.at = now

    def wait(self, now: float, n: float = 1.0) -> float:
        """Seconds until `n` tokens are there (0: now)."""
        self._fill(now)
        missing = n - self.tokens
        return missing / self.rate if missing > 0 else 0.0

    def take(self, now: float, n: float = 1.0) -> None:
        """Take `n` tokens (ask `wait` first: this does not check that they are there)."""
        self._fill(now)
        self.tokens -= n

    def try_take(self, now: float) -> float:
        """0.0 when a token was taken; otherwise the seconds until one will be there (and none is taken)."""
        wait = self.wait(now)
        if wait == 0.0:
            self.tokens -= 1.0
        return wait

    def __repr__(self) -> str:
        return f"<TokenBucket {self.tokens:.1f}/{self.burst:g} +{self.rate:g}/s>"


class KeyedBuckets(Generic[K]):
    """One bucket per key, at most `max_keys` of them (least recently used dropped first)."""

    __slots__ = ("_buckets", "burst", "max_keys", "rate")

    def __init__(self, rate: float, burst: float, max_keys: int) -> None:
        if max_keys < 1:
            raise ValueError("keyed buckets need max_keys >= 1")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[K, TokenBucket] = OrderedDict()

    def bucket(self, key: K, now: float) -> TokenBucket:
        """The bucket of `key` (a new, full one when absent), now the most recently used."""
        buckets = self._buckets
        bucket = buckets.get(key)
        if bucket is None:
            if len(buckets) >= self.max_keys:
                buckets.popitem(last=False)
            bucket = buckets[key] = TokenBucket(self.rate, self.burst, now)
        elif len(buckets) > 1:
            buckets.move_to_end(key)
        return bucket

    def try_take(self, key: K, now: float) -> float:
        return self.bucket(key, now).try_take(now)

    def __contains__(self, key: object) -> bool:
        return key in self._buckets

    def __len__(self) -> int:
        return len(self._buckets)


__all__ = ["KeyedBuckets", "TokenBucket"]
