"""The HTTP/2 side of an endpoint's pool (http/pool.py): few connections, each carrying many streams.

A request takes a stream on the first connection with one free (the peer's SETTINGS_MAX_CONCURRENT_STREAMS
decides); when every connection is full the pool opens another while the endpoint's `max_connections` (and
the cluster's budget) allow, else the request waits for a free stream, in the same bounded queue as HTTP/1.1
callers (`max_pending`: 503 `upstream_pool_overflow`; its deadline: 504 `upstream_pool_timeout`). While one
connection is being opened, callers wait for it rather than each opening its own; if it fails, they all get
its failure. Connections with no stream for `idle_timeout` close.

Replays on another stream: a stream the peer refused without processing it (GOAWAY above its last stream id,
REFUSED_STREAM), whatever the method, up to `MAX_REFUSED` times; and once, as HTTP/1.1 does, an idempotent request
whose reused connection died before any byte of its answer. Always within the request's deadline.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Final, Protocol

from meshbatch.errors import (
    ConnectFailed,
    ConnectTimeout,
    GatewayTimeout,
    PoolOverflow,
    ProxyError,
    StreamRefused,
    UpstreamReset,
)
from meshbatch.http.message import Headers, Response
from meshbatch.http.upload import Upload
from meshbatch.http2.client import MultiplexedConnection
from meshbatch.http2.replay import unprocessed

MAX_REFUSED: Final = 3  # a request the upstream refused unprocessed is sent again at most this many times


class Limits(Protocol):
    """The endpoint pool's limits this side reads (its `PoolLimits`, current after a reload)."""

    @property
    def max_pending(self) -> int: ...
    @property
    def connect_timeout(self) -> float: ...
    @property
    def idle_timeout(self) -> float: ...


class Owner(Protocol):
    @property
    def limits(self) -> Limits: ...


class StreamPool:
    __slots__ = ("_connect", "_forget", "_loop", "_opening", "_owner", "_reaper", "_room", "_waiters", "closed",
                 "conns")

    def __init__(self, loop: asyncio.AbstractEventLoop, connect: Callable[[float], Awaitable[MultiplexedConnection]],
                 room: Callable[[], bool], forget: Callable[[MultiplexedConnection], None], owner: Owner) -> None:
        self._loop = loop
        self._connect = connect  # a new connection (TCP, TLS with ALPN h2), counted by the endpoint's pool
        self._room = room  # whether the endpoint's pool may open one more connection now
        self._forget = forget  # a connection closed: the endpoint's pool counts it no more
        self._owner = owner  # the endpoint's pool, whose limits apply
        self.conns: list[MultiplexedConnection] = []
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._opening = False
        self._reaper: asyncio.TimerHandle | None = None
        self.closed = False

    @property
    def idle(self) -> int:
        """Connections with a free stream (what `idle` means to the guard: a request would not wait)."""
        return sum(1 for conn in self.conns if conn.available)

    @property
    def pending(self) -> int:
        return len(self._waiters)

    @property
    def streams(self) -> int:
        return sum(len(conn.streams) for conn in self.conns)

    def __repr__(self) -> str:
        return f"<StreamPool conns={len(self.conns)} streams={self.streams} pending={self.pending}>"

    # the exchange ----------------------------------------------------------------------------------------
    async def request(self, method: bytes, target: bytes, headers: Headers, body: bytes, deadline: float,
                      stream_limit: int = 0, upload: Upload | None = None, trailers: Headers | None = None) -> Response:
        """One request on a stream, its `trailers` after its body; an `upload` (its body as it arrives, with its
        trailers) is sent once, never replayed."""
        replayed = False  # (after a reset)
        refused = 0
        while True:
            conn = await self._acquire(deadline)
            stream = conn.request(method, target, headers, body, deadline, stream_limit, upload, trailers)
            try:
                return await stream.waiter
            except asyncio.CancelledError:
                conn.cancel(stream)  # RST_STREAM CANCEL: the upstream stops working on it
                raise
            except StreamRefused:
                refused += 1
                if refused > MAX_REFUSED or self._loop.time() >= deadline or upload is not None:
                    raise
                continue
            except UpstreamReset as error:
                if replayed or not unprocessed(error, stream, conn, method) or self._loop.time() >= deadline or \
                        upload is not None:
                    raise
            replayed = True

    def free_connection(self) -> MultiplexedConnection | None:
        """A connection with a stream free now (None: every one is full, or the pool is closed)."""
        if not self.closed:
            for conn in self.conns:
                if conn.available:
                    return conn
        return None

    async def _acquire(self, deadline: float) -> MultiplexedConnection:
        while True:
            if self.closed:
                raise ConnectFailed("cluster_removed", "the endpoint was removed by a config reload")
            conn = self.free_connection()
            if conn is not None:
                return conn
            if not self._opening and self._room():
                await self._open(deadline)
                continue  # (the new connection may allow no stream now: SETTINGS_MAX_CONCURRENT_STREAMS 0)
            if len(self._waiters) >= self._owner.limits.max_pending:
                raise PoolOverflow("upstream_pool_overflow", "no free HTTP/2 stream, and no room for a connection")
            waiter: asyncio.Future[None] = self._loop.create_future()
            self._waiters.append(waiter)
            timer = self._loop.call_at(deadline, _expire, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    async def _open(self, deadline: float) -> None:
        """Open one connection and wait for the peer's SETTINGS; callers waiting meanwhile get the outcome."""
        self._opening = True
        opened = False
        try:
            conn = await self._connect(deadline)
            timeout = min(self._owner.limits.connect_timeout, max(deadline - self._loop.time(), 0.0))
            try:
                async with asyncio.timeout(timeout):
                    await asyncio.shield(conn.ready)
            except BaseException as exc:
                conn.close()
                self._forget(conn)
                if isinstance(exc, TimeoutError):
                    raise ConnectTimeout("connect_timeout", "no HTTP/2 SETTINGS from the upstream in time") from None
                raise
            opened = True
        except ProxyError as error:
            self._wake_all(error)  # they waited for this connection: they get its failure
            raise
        finally:
            self._opening = False
            if not opened:
                self._wake_all()  # (cancelled: one of them opens it)
        if conn.closed:  # (it closed as soon as it opened)
            self._forget(conn)
            return
        conn.on_free = self._freed
        conn.on_close = self._closed
        self.conns.append(conn)
        self._wake_all()

    # connections tell ------------------------------------------------------------------------------------
    def _freed(self, conn: MultiplexedConnection) -> None:
        """A stream slot freed up on `conn`, its limit changed or it stopped taking streams."""
        if conn.available:
            self.wake_one()
        elif conn.goaway:
            self._wake_all()  # they may open a connection to replace it
        if not conn.streams and self._reaper is None and not self.closed:
            self._reaper = self._loop.call_at(self._loop.time() + self._owner.limits.idle_timeout, self._reap)

    def _closed(self, conn: MultiplexedConnection) -> None:
        if conn in self.conns:
            self.conns.remove(conn)
        self._forget(conn)
        self._wake_all()

    def wake_one(self) -> bool:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return True
        return False

    def _wake_all(self, error: ProxyError | None = None) -> None:
        waiters = self._waiters
        self._waiters = deque()
        for waiter in waiters:
            if not waiter.done():
                if error is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(type(error)(error.reason, error.detail))  # (its own copy each)

    def _reap(self) -> None:
        self._reaper = None
        cutoff = self._loop.time() - self._owner.limits.idle_timeout
        for conn in [c for c in self.conns if not c.streams and c.idle_since <= cutoff]:
            conn.close()
        idle = [c.idle_since for c in self.conns if not c.streams]
        if idle and not self.closed:
            self._reaper = self._loop.call_at(min(idle) + self._owner.limits.idle_timeout, self._reap)

    def close(self) -> None:
        """Close idle connections now; busy ones close when their last stream ends (GOAWAY on our side)."""
        self.closed = True
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        for conn in list(self.conns):
            if conn.streams:
                conn.goaway = True  # no new stream; it closes after its last one
            else:
                conn.close()
        self._wake_all(ConnectFailed("cluster_removed"))


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(GatewayTimeout("upstream_pool_timeout", "no HTTP/2 stream became free in time"))


__all__ = ["StreamPool"]
