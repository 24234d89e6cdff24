"""An accepted event as the log and the sinks see it, and how its id is made.

The sinks store each event id once, so an id is a claim: whoever can make an id before its event arrives makes
that event vanish (answered 202, then ignored as a duplicate). Two id spaces keep every claim with its caller:

- **generated** ids (no `idempotency-key`): `e.<ms>-<random>`, the creation time in milliseconds (11 hex digits,
  so ids sort by time) and 128 bits from the system's random source (`os.urandom`, read 4 KiB at a time, each
  byte used once), fresh per id: no answer tells anything about the next id.
- **keyed** ids: `k.<scope>.<key>[:<part>]`, with `<scope>` 32 hex digits of a digest of the caller's scope
  (meshbatch.security.scope), `<key>` the caller's key percent-encoded (only `A-Z a-z 0-9 - . _ ~` stay as
  they are), and `:<part>` the event's place when one request carries several events (`:0`, `:1`, ...;
  `:dead3` for one parked by `validate`). The same caller sending the same key again makes the same id (that is
  the point: its retry is stored once); another caller, with the same key, makes another id.

The two sets are disjoint by their first two characters, whatever the key: no key makes a generated id, nor an
id of another scope. Keyed ids are one-to-one with (scope digest, key, part): the digest has a fixed length, and
the encoded key holds no `:`, so the part is found without doubt. Neither shape holds a `,` (the cluster sink
lists ids comma-separated), `#` (the JetStream replay suffix), whitespace or anything but printable ASCII.
"""

from __future__ import annotations

import os
import time
from typing import Any, ClassVar, Final
from urllib.parse import quote, unquote

from meshbatch.security import scope


class Record:
    """One event: its id (`EventIds` or `keyed_id`), its JSON body, when it was received (wall-clock seconds), how
    many deliveries of it failed, the log's own handle (`seq`, `ref`), and, with tracing on, the `traceparent`
    naming the span of the request that brought it (its delivery span links to it)."""

    __slots__ = ("attempts", "body", "id", "received", "ref", "seq", "trace")

    def __init__(self, id: str, body: bytes, received: float, attempts: int = 0, seq: int = 0,
                 ref: Any = None, trace: bytes | None = None) -> None:
        self.id = id
        self.body = body
        self.received = received
        self.attempts = attempts
        self.seq = seq
        self.ref = ref
        self.trace = trace

    def __repr__(self) -> str:
        return f"<Record {self.id} seq={self.seq} {len(self.body)}B attempts={self.attempts}>"


GENERATED = "e."
KEYED = "k."
RANDOM_BYTES = 16  # per generated id: 128 bits, unguessable and unique without coordination between processes
DIGEST_CHARS = 2 * scope.DIGEST_SIZE  # hex digits of a scope digest


class RandomPool:
    """Bytes from the system's random source, read 4 KiB at a time: a generated id costs a slice, not a
    getrandom(2) call. A forked child never reuses its parent's bytes (the pool is dropped at fork). `digits`
    hands out bytes as hexadecimal digits, those of the whole pool made once a refill (an id's 32 digits are a
    slice, not a `hex()` call each); each byte is handed out once, as a byte or as its digits."""

    SIZE: ClassVar[int] = 4096

    def __init__(self) -> None:
        self._pool = b""
        self._digits = ""  # the pool's bytes in hexadecimal, made at the first `digits` after a refill
        self._at = 0
        os.register_at_fork(after_in_child=self.drop)

    def drop(self) -> None:
        self._pool, self._digits, self._at = b"", "", 0

    def take(self, n: int) -> bytes:
        at = self._claim(n)
        return self._pool[at:at + n]

    def digits(self, n: int) -> str:
        """`n` bytes as 2n lower-case hexadecimal digits."""
        at = self._claim(n)
        if not self._digits:
            self._digits = self._pool.hex()
        return self._digits[2 * at:2 * (at + n)]

    def _claim(self, n: int) -> int:
        """The place of the next `n` bytes, refilling the pool when it has fewer left."""
        at = self._at
        if at + n > len(self._pool):
            self._pool, self._digits, at = os.urandom(max(self.SIZE, n)), "", 0
        self._at = at + n
        return at


_RANDOM: Final = RandomPool()


class EventIds:
    """Generated event ids: `e.<ms hex>-<128 random bits hex>`, unique across processes and restarts, sortable
    by creation time (to the millisecond)."""

    __slots__ = ("_ms", "_stamp")

    def __init__(self) -> None:
        self._ms = -1  # the millisecond of the last id, and its `e.<ms hex>-` (made once a millisecond)
        self._stamp = ""

    def __call__(self, now: float | None = None) -> str:
        return self.many(1, now)[0]

    def many(self, n: int, now: float | None = None) -> list[str]:
        """`n` ids for events received at `now` (wall-clock seconds; default: the current time), from the
        system's random source."""
        ms = int((time.time() if now is None else now) * 1000)
        if ms != self._ms:
            self._ms, self._stamp = ms, f"{GENERATED}{ms:011x}-"
        stamp = self._stamp
        if n == 1:
            return [stamp + _RANDOM.digits(RANDOM_BYTES)]
        width = 2 * RANDOM_BYTES
        randomness = _RANDOM.digits(RANDOM_BYTES * n)
        return [stamp + randomness[i:i + width] for i in range(0, width * n, width)]


def scope_digest(caller_scope: bytes) -> str:
    """The scope's part of a keyed id (meshbatch.security.scope.scope_digest, in hex): stable across processes,
    restarts and replicas (a retry through another replica names the same event), never equal for two scopes in
    practice."""
    return scope.scope_digest(caller_scope).hex()


def keyed_id(digest: str, key: str, part: str = "") -> str:
    """The id of the event a caller of scope `digest` (`scope_digest`) sent with idempotency key `key`; `part`
    names one of several events of one request."""
    encoded = quote(key, safe="")
    return f"{KEYED}{digest}.{encoded}:{part}" if part else f"{KEYED}{digest}.{encoded}"


def key_of(event_id: str) -> str | None:
    """The caller's idempotency key inside a keyed id (`keyed_id`), or None for any other id."""
    if not event_id.startswith(KEYED) or len(event_id) < 3 + DIGEST_CHARS or event_id[2 + DIGEST_CHARS] != ".":
        return None
    encoded, _, _ = event_id[3 + DIGEST_CHARS:].partition(":")
    return unquote(encoded)


MAX_KEY_LENGTH = 200


def valid_key(key: bytes) -> str | None:
    """The idempotency key as text, or None when it is not usable (empty, too long, not printable ASCII)."""
    if not key or len(key) > MAX_KEY_LENGTH:
        return None
    try:
        text = key.decode("ascii")
    except UnicodeDecodeError:
        return None
    return text if text.isprintable() else None


__all__ = ["GENERATED", "KEYED", "MAX_KEY_LENGTH", "EventIds", "RandomPool", "Record", "key_of", "keyed_id",
           "scope_digest", "valid_key"]
