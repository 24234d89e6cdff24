"""Which shard a key belongs to: rendezvous (highest random weight) hashing, pure and stable.

Each shard has a name (its `name:` in the config, else its place in the list: "0", "1", ...). A key's score on a
shard is the first 8 bytes of BLAKE2b(name, NUL, key) read as a big-endian integer; the key goes to the shard
with the highest score (ties, which 64-bit scores make vanishingly rare, to the earlier shard). BLAKE2b comes with
every Python (hashlib) and its output is fixed by RFC 7693, so a key lands on the same shard in every process,
replica, restart and Python version; Python's own `hash()` is salted per process and would not.

Why rendezvous rather than jump hash: adding shard N+1 moves only the keys whose new highest score is on it
(1/(N+1) of them in expectation, every one of them to the new shard), and removing a shard moves only the keys it
held; jump hash moves as few keys when a shard is appended, but can only remove the last one and ties a key to a
shard's position in the list. Rendezvous costs one hash per shard per key (a BLAKE2b of a few bytes: about 2 us
each on a busy 2-core test machine, so under 10 us an event for three shards), little next to parsing the event
and a database round trip; a long list of shards would want a table (Maglev) instead.

Keys: the `shard_by` field's value, as text: a string as it is (UTF-8), a number or boolean in its JSON form
(`42`, `1.5`, `true`), so `42` and `"42"` are the same key. A missing field, `null`, an object or an array is no
key (`key_text` returns None; the sink's `default_shard` rule decides).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

DIGEST_SIZE = 8


class Rendezvous:
    """Rendezvous hashing over shard names: `place(key)` is the index of the key's shard."""

    __slots__ = ("_seeds", "names")

    def __init__(self, names: Sequence[str]) -> None:
        if not names:
            raise ValueError("rendezvous hashing needs at least one shard")
        if len(set(names)) != len(names):
            raise ValueError("shard names must be distinct")
        self.names = tuple(names)
        self._seeds = [hashlib.blake2b(name.encode() + b"\x00", digest_size=DIGEST_SIZE) for name in names]

    def score(self, index: int, key: bytes) -> int:
        h = self._seeds[index].copy()
        h.update(key)
        return int.from_bytes(h.digest(), "big")

    def place(self, key: bytes) -> int:
        best, best_score = 0, -1
        for index, seed in enumerate(self._seeds):
            h = seed.copy()
            h.update(key)
            score = int.from_bytes(h.digest(), "big")
            if score > best_score:
                best, best_score = index, score
        return best


def key_text(value: Any) -> bytes | None:
    """The key a field value stands for (see the module docstring), or None when it is no key."""
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bool | int | float):
        return orjson.dumps(value)
    return None


def field_value(event: Any, path: tuple[str, ...]) -> Any:
    """The value at a dotted path of a JSON event (None when any step is missing or not an object)."""
    value = event
    for part in path:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def moves(before: Sequence[str], after: Sequence[str], keys: Iterable[bytes]) -> list[tuple[bytes, str, str]]:
    """(key, shard before, shard after) for every key whose shard changes between two lists of shard names."""
    old, new = Rendezvous(before), Rendezvous(after)
    out: list[tuple[bytes, str, str]] = []
    for key in keys:
        a, b = old.names[old.place(key)], new.names[new.place(key)]
        if a != b:
            out.append((key, a, b))
    return out


__all__ = ["DIGEST_SIZE", "Rendezvous", "field_value", "key_text", "moves"]
