"""What a request asks of the batcher: its batch key, priority, deadline and idempotency key, read in one pass.

Header names the batcher reads:
- `x-meshbatch-priority`: `high`, `normal` (default) or `low` (any letter case); anything else is a 400;
- `x-meshbatch-deadline-ms`: the caller's remaining budget in milliseconds (a decimal number, relative to the
  request's arrival); not a finite number is a 400, zero or less is already exhausted (504);
- `idempotency-key`: callers with the same key (and batch key) share one upstream item (dedup);
- `grpc-timeout` on a gRPC route (`batch.codec: grpc`): the caller's deadline as gRPC sends it (grpc/timeout.py;
  a malformed one is a 400, answered INTERNAL as gRPC servers do); with `x-meshbatch-deadline-ms` too, the
  shorter budget wins;
- the `header:NAME` parts of the route's `batch.key`. `query:NAME` parts come from the query string.
A missing key part is the empty value: such requests share a batch with each other, never with others.
"""

from __future__ import annotations

import math
from urllib.parse import unquote_to_bytes

from meshbatch.batching.batch import NORMAL, PRIORITIES, Key
from meshbatch.errors import BadRequest
from meshbatch.grpc import timeout as grpc_timeout_module
from meshbatch.http.message import Request

PRIORITY_HEADER = b"x-meshbatch-priority"
DEADLINE_HEADER = b"x-meshbatch-deadline-ms"
IDEMPOTENCY_HEADER = b"idempotency-key"
_PRIORITY, _DEADLINE, _IDEMPOTENCY, _GRPC_TIMEOUT = -1, -2, -3, -4


def query_value(query: bytes, name: bytes) -> bytes:
    """The first value of `name` in a query string (percent- and plus-decoded), or b""."""
    for part in query.split(b"&"):
        raw_name, _, raw_value = part.partition(b"=")
        if _unquote(raw_name) == name:
            return _unquote(raw_value)
    return b""


def _unquote(value: bytes) -> bytes:
    if b"%" in value or b"+" in value:
        return unquote_to_bytes(value.replace(b"+", b" "))
    return value


class Controls:
    """Reads the batching controls of requests for one route's `batch.key` spec."""

    __slots__ = ("_headers", "_key_size", "_queries", "has_key", "key_headers", "key_queries")

    def __init__(self, key_spec: list[str] | tuple[str, ...], grpc_timeout: bool = False) -> None:
        self._headers: dict[bytes, int] = {PRIORITY_HEADER: _PRIORITY, DEADLINE_HEADER: _DEADLINE,
                                           IDEMPOTENCY_HEADER: _IDEMPOTENCY}
        if grpc_timeout:
            self._headers[grpc_timeout_module.HEADER] = _GRPC_TIMEOUT
        self._queries: list[tuple[int, bytes]] = []
        self.key_headers: list[tuple[int, bytes]] = []  # (position in the key, lower-case header name)
        self.key_queries: list[tuple[int, bytes]] = []  # (position in the key, query parameter name)
        for index, part in enumerate(key_spec):
            kind, _, name = part.partition(":")
            if kind == "header":
                header = name.strip().lower().encode("latin-1")
                self._headers.setdefault(header, index)
                self.key_headers.append((index, header))
            elif kind == "query":
                self._queries.append((index, name.encode()))
                self.key_queries.append((index, name.encode()))
            else:
                raise ValueError(f"{part!r}: a key part is 'header:NAME' or 'query:NAME'")
        self._key_size = len(key_spec)
        self.has_key = bool(key_spec)

    def read(self, request: Request) -> tuple[Key, int, float | None, bytes | None]:
        """(batch key, priority, deadline budget in seconds or None, idempotency key or None). Raises
        BadRequest with a stable reason for a bad control header."""
        wanted = self._headers
        key = [b""] * self._key_size if self._key_size else None
        seen = 0
        priority = NORMAL
        budget: float | None = None
        idempotency: bytes | None = None
        for name, value in request.headers:
            slot = wanted.get(name)
            if slot is None:
                continue
            bit = 1 << (slot + 4)
            if seen & bit:
                continue  # the first occurrence wins
            seen |= bit
            if slot == _PRIORITY:
                level = PRIORITIES.get(value)
                if level is None:
                    level = PRIORITIES.get(value.strip().lower())
                    if level is None:
                        raise BadRequest("bad_priority", f"{PRIORITY_HEADER.decode()} must be high, normal or low")
                priority = level
            elif slot == _DEADLINE:
                budget = _shorter(budget, _budget(value))
            elif slot == _GRPC_TIMEOUT:
                budget = _shorter(budget, _grpc_budget(value))
            elif slot == _IDEMPOTENCY:
                idempotency = value or None
            elif key is not None:
                key[slot] = value
        if key is None:
            return (), priority, budget, idempotency
        for index, name in self._queries:
            key[index] = query_value(request.query, name) if request.query else b""
        return tuple(key), priority, budget, idempotency


def _shorter(budget: float | None, other: float) -> float:
    return other if budget is None or other < budget else budget


def _grpc_budget(value: bytes) -> float:
    try:
        return grpc_timeout_module.parse(value)
    except ValueError as exc:
        raise BadRequest("bad_deadline", str(exc)) from None


def _budget(value: bytes) -> float:
    try:
        ms = float(value)
    except ValueError:
        ms = math.nan
    if not math.isfinite(ms):
        raise BadRequest("bad_deadline", f"{DEADLINE_HEADER.decode()} must be a number of milliseconds")
    return ms / 1000.0


__all__ = ["DEADLINE_HEADER", "IDEMPOTENCY_HEADER", "PRIORITY_HEADER", "Controls", "query_value"]
