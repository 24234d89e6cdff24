"""An accepted event as the log and the sinks see it, and how its id is made."""

from __future__ import annotations

import itertools
import os
import secrets
import time
from typing import Any


class Record:
    """One event: its id (the caller's idempotency key, or made here), its JSON body, when it was received
    (wall-clock seconds), how many deliveries of it failed, the log's own handle (`seq`, `ref`), and, with tracing
    on, the `traceparent` naming the span of the request that brought it (its delivery span links to it)."""

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


class EventIds:
    """Ids unique across processes and restarts, sortable by creation: `TTTTTTTTTTT-RRRRRRRR-N` with the start time
    in milliseconds (hex), 32 random bits per process start, and a counter (hex)."""

    __slots__ = ("_counter", "_prefix")

    def __init__(self) -> None:
        self._prefix = f"{int(time.time() * 1000):011x}-{secrets.token_hex(4)}{os.getpid() & 0xff:02x}-"
        self._counter = itertools.count(1)

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._counter):x}"


MAX_KEY_LENGTH = 200


def valid_key(key: bytes) -> str | None:
    """The idempotency key as an event id, or None when it is not usable (empty, too long, not printable)."""
    if not key or len(key) > MAX_KEY_LENGTH:
        return None
    try:
        text = key.decode("ascii")
    except UnicodeDecodeError:
        return None
    return text if text.isprintable() else None


__all__ = ["MAX_KEY_LENGTH", "EventIds", "Record", "valid_key"]
