"""When a request that failed on an HTTP/2 stream may be sent again on another: the one rule the stream pool
(http2/pool.py) and the fast path (upstream/exchange.py `FastStream`) share. No h2 here: the fast path reads it
without loading the library before an HTTP/2 endpoint does."""

from __future__ import annotations

from typing import Protocol

from meshbatch.errors import StreamRefused, UpstreamReset
from meshbatch.http.message import IDEMPOTENT


class _Received(Protocol):
    @property
    def received(self) -> bool: ...


class _Used(Protocol):
    @property
    def uses(self) -> int: ...


def unprocessed(error: BaseException, stream: _Received, conn: _Used, method: bytes) -> bool:
    """The upstream never processed it: it refused the stream (REFUSED_STREAM, GOAWAY above it), or a reused
    connection died before any byte of an idempotent request's answer. Whoever replays bounds how often."""
    if isinstance(error, StreamRefused):
        return True
    return isinstance(error, UpstreamReset) and not stream.received and conn.uses > 1 and method in IDEMPOTENT


__all__ = ["unprocessed"]
