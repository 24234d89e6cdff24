"""Token buckets with an explicit `now`, alone (per connection) or keyed (per identity, bounded LRU). Pure."""

from __future__ import annotations

from collections import OrderedDict


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved; starts full."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def take(self, now: float) -> float:
        """0.0 when a token was taken; otherwise the seconds until one will be there."""
        tokens = self.tokens
        elapsed = now - self.stamp
        if elapsed > 0:
            tokens = min(self.burst, tokens + elapsed * self.rate)
            self.stamp = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return 0.0
        self.tokens = tokens
        return (1.0 - tokens) / self.rate


class KeyedBuckets:
    """One bucket per key; at most `max_keys` kept, the least recently used dropped first (a dropped key starts
    again with a full bucket, so the cap bounds memory, never admits more than `burst` at once per key)."""

    __slots__ = ("_buckets", "burst", "max_keys", "rate")

    def __init__(self, rate: float, burst: float, max_keys: int) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def take(self, key: str, now: float) -> float:
        buckets = self._buckets
        bucket = buckets.get(key)
        if bucket is None:
            if len(buckets) >= self.max_keys:
                buckets.popitem(last=False)
            bucket = buckets[key] = TokenBucket(self.rate, self.burst, now)
        else:
            buckets.move_to_end(key)
        return bucket.take(now)

    def __len__(self) -> int:
        return len(self._buckets)


__all__ = ["KeyedBuckets", "TokenBucket"]
