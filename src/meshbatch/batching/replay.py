"""The idempotency replay window: answers kept after they are given, for callers that send the same key again.

With `batch.dedup_window_ms > 0`, the answer an item got is kept for that long under its dedup key (the caller's
scope, the batch key, the idempotency-key: `item.dedup_key`). A later request of the same scope with the same key
and the same body is answered from here, without an upstream call (the replayed answer says so with
`idempotent-replayed: true`); the same key with another body is refused with 400 `idempotency_key_reused`. A
request of another scope finds nothing here, whatever key it sends: kept answers are never another caller's.
Kept: the upstream's own per-item answers below 500. Not kept: the proxy's own failures (timeouts, a bad batch
answer, an unreachable upstream) and 5xx, so a retry after a failure is sent again.

Sans-I/O: the caller passes the time. Entries live in insertion order, which with one window for all is also
their expiry order, so expired entries and the oldest ones beyond `max_keys` both leave from the front.
"""

from __future__ import annotations

from meshbatch.batching.batch import DedupKey
from meshbatch.batching.codecs.base import ItemResult
from meshbatch.http.message import Headers


class Replay:
    """One kept answer: the request body it answered, the result and the headers of the batch that carried it."""

    __slots__ = ("batch_headers", "body", "expires", "result")

    def __init__(self, body: bytes, result: ItemResult, batch_headers: Headers, expires: float) -> None:
        self.body = body
        self.result = result
        self.batch_headers = batch_headers
        self.expires = expires


class ReplayCache:
    __slots__ = ("_entries", "evicted", "max_keys", "window")

    def __init__(self, window: float, max_keys: int) -> None:
        if window <= 0 or max_keys < 1:
            raise ValueError("a replay window needs window > 0 and max_keys >= 1")
        self.window = window
        self.max_keys = max_keys
        self.evicted = 0  # kept answers dropped before their window ended (max_keys reached)
        self._entries: dict[DedupKey, Replay] = {}

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def keeps(result: ItemResult) -> bool:
        """Whether an answer is replayed: the upstream's own, below 500."""
        return not result.reason and result.status < 500

    def put(self, key: DedupKey, body: bytes, result: ItemResult, batch_headers: Headers, now: float) -> None:
        entries = self._entries
        entries.pop(key, None)  # a key given again goes to the back: its window starts now
        entries[key] = Replay(body, result, batch_headers, now + self.window)
        self._expire(now)
        while len(entries) > self.max_keys:
            del entries[next(iter(entries))]
            self.evicted += 1

    def get(self, key: DedupKey, now: float) -> Replay | None:
        entries = self._entries
        if not entries:
            return None
        self._expire(now)
        return entries.get(key)

    def _expire(self, now: float) -> None:
        entries = self._entries
        while entries:
            key, oldest = next(iter(entries.items()))
            if oldest.expires > now:
                return
            del entries[key]


__all__ = ["Replay", "ReplayCache"]
