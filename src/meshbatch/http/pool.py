"""Keep-alive connections to one upstream endpoint, with limits.

`max_connections` caps open connections; callers beyond it wait in a bounded queue (`max_pending`), beyond
which the pool overflows (503). Idle connections are reused newest-first and closed after `idle_timeout`.

A cluster with circuit breakers also caps the connections open across all its endpoints: its pools share a
`ConnectionBudget`. A pool that needs a connection when the budget is spent first closes the oldest idle
connection of another pool of the cluster (capacity sitting idle elsewhere), and otherwise waits, as for its
own limit, until a connection anywhere in the cluster closes (Envoy queues such requests as pending too). An
HTTP/2 endpoint hands out streams of few connections (`streams`, http2/pool.py), opened and counted here.
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from meshbatch.errors import ConnectFailed, GatewayTimeout, PoolOverflow, UpstreamReset
from meshbatch.http.client import UpstreamConnection
from meshbatch.http.connecting import NOT_H2, UpstreamTls, connect_error, selected_alpn
from meshbatch.http.message import IDEMPOTENT, Response

if TYPE_CHECKING:  # HTTP/2 (and the h2 library) is imported by the first endpoint with `protocol: http2`
    from meshbatch.http.upload import Upload
    from meshbatch.http2.client import MultiplexedConnection
    from meshbatch.http2.pool import StreamPool

_Conn = TypeVar("_Conn", UpstreamConnection, "MultiplexedConnection")


class ConnectionBudget:
    """Connections open (or opening) across the pools of one cluster, at most `limit`."""

    __slots__ = ("limit", "opened", "pools", "waiting")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.opened = 0
        self.pools: list[EndpointPool] = []  # the pools drawing on it (weakly: a pool leaves when it closes)
        self.waiting: deque[EndpointPool] = deque()  # pools with a caller waiting for the budget, oldest first

    def room(self, pool: EndpointPool) -> bool:
        """True if `pool` may open a connection now, after closing an idle one elsewhere if that is needed."""
        if self.opened < self.limit:
            return True
        victim: EndpointPool | None = None
        oldest = float("inf")
        for other in self.pools:
            if other is not pool and other.idle:
                since = other.oldest_idle_since()
                if since < oldest:
                    victim, oldest = other, since
        if victim is None:
            return False
        victim.close_oldest_idle()
        return self.opened < self.limit

    def wanted(self, pool: EndpointPool) -> bool:
        """True if a pool other than `pool` has a caller waiting for the budget (stale entries are dropped)."""
        waiting = self.waiting
        while waiting:
            other = waiting[0]
            if other is not pool and other.pending and not other.closed:
                return True
            waiting.popleft()  # served meanwhile, closed, or `pool` itself (whose callers are served first)
        return False

    def freed(self, pool: EndpointPool) -> None:
        """A connection of `pool` closed: a pool waiting for the budget may open one."""
        self.opened -= 1
        while self.waiting and self.opened < self.limit:
            other = self.waiting.popleft()
            if other is not pool and other.wake_one():
                return

    def __repr__(self) -> str:
        return f"<ConnectionBudget {self.opened}/{self.limit} waiting={len(self.waiting)}>"


@dataclass(frozen=True, slots=True)
class PoolLimits:
    max_connections: int = 1024
    max_pending: int = 1024
    connect_timeout: float = 1.0
    idle_timeout: float = 30.0
    max_response_bytes: int = 67_108_864
    tls: UpstreamTls | None = None  # mTLS to the endpoint (meshbatch.security.client.ClientTls)
    budget: ConnectionBudget | None = None  # the cluster-wide connection cap this pool shares, if any
    protocol: str = "http1"  # or "http2": streams over few connections (h2c, or h2 by ALPN over TLS)


class EndpointPool:
    __slots__ = ("_idle", "_idle_since", "_loop", "_reaper", "_waiters", "budget", "closed", "connect_failures",
                 "connects", "host", "limits", "opened", "port", "streams")

    def __init__(self, host: str, port: int, limits: PoolLimits, loop: asyncio.AbstractEventLoop) -> None:
        self.host = host
        self.port = port
        self.limits = limits
        self.budget: ConnectionBudget | None = None
        self._loop = loop
        self._idle: list[UpstreamConnection] = []
        self._idle_since: dict[UpstreamConnection, float] = {}
        self._waiters: deque[asyncio.Future[UpstreamConnection | None]] = deque()
        self._reaper: asyncio.TimerHandle | None = None
        self.opened = 0  # connections open or opening
        self.connects = 0
        self.connect_failures = 0
        self.closed = False
        self.streams: StreamPool | None = None  # an HTTP/2 endpoint's connections and streams
        self.set_limits(limits)

    def set_limits(self, limits: PoolLimits) -> None:
        """New limits (a reload, or a new owner cluster): connections open move to the new shared budget."""
        self.limits = limits
        if (limits.protocol == "http2") != (self.streams is not None):  # the protocol changed: a new start
            self._h2_pool(limits)
        budget = limits.budget
        old = self.budget
        if budget is old:
            return
        if old is not None:
            old.opened -= self.opened
            if self in old.pools:
                old.pools.remove(self)
        if budget is not None:
            budget.opened += self.opened
            budget.pools.append(self)
        self.budget = budget

    # state ---------------------------------------------------------------------------------------
    @property
    def idle(self) -> int:
        return len(self._idle) if self.streams is None else self.streams.idle

    @property
    def active(self) -> int:
        return self.opened - len(self._idle)

    @property
    def pending(self) -> int:
        return len(self._waiters) if self.streams is None else self.streams.pending

    def __repr__(self) -> str:
        return (f"<EndpointPool {self.host}:{self.port} open={self.opened} idle={self.idle} "
                f"pending={self.pending}>")

    # the exchange --------------------------------------------------------------------------------
    async def request(self, method: bytes, data: bytes, deadline: float, stream_limit: int = 0,
                      upload: Upload | None = None) -> Response:
        """Send one encoded request (its head, with an `upload`: never replayed); replay once on a fresh connection
        if a reused one was already dead. With a `stream_limit`, a larger answer comes with a `stream`: its
        connection comes back to the pool when that stream is over (see http/stream.py), not now."""
        conn = self.take_idle()
        if conn is None:
            conn = await self._acquire(deadline)
        head = method == b"HEAD"
        replay = False
        try:
            try:
                response = await conn.send(data, head=head, deadline=deadline, stream_limit=stream_limit,
                                           upload=upload)
            except UpstreamReset:
                if conn.uses <= 1 or method not in IDEMPOTENT or self._loop.time() >= deadline or upload is not None:
                    raise
                replay = True
            if replay:  # out of the handler: compiled code must not suspend in one (docs/performance.md)
                self.discard(conn)
                conn = await self._acquire(deadline, fresh=True)
                response = await conn.send(data, head=head, deadline=deadline, stream_limit=stream_limit)
        except asyncio.CancelledError:
            conn.abandon()
            self.discard(conn)
            raise
        except BaseException:
            self.discard(conn)
            raise
        stream = response.stream
        if stream is None:
            self.release(conn)
        else:
            taken = conn
            stream.when_closed(lambda: self.release(taken))
        return response

    def take_idle(self) -> UpstreamConnection | None:
        """The newest usable idle connection, without suspending (the hot path)."""
        idle = self._idle
        while idle and not self.closed:
            conn = idle.pop()
            del self._idle_since[conn]
            if conn.usable:
                return conn
            conn.close()
            if conn.pooled:
                conn.pooled = False
                self._slot_freed()
        return None

    async def _acquire(self, deadline: float, fresh: bool = False) -> UpstreamConnection:
        while True:
            if self.closed:
                raise ConnectFailed("cluster_removed", "the endpoint was removed by a config reload")
            if not fresh:
                conn = self.take_idle()
                if conn is not None:
                    return conn
            budget = self.budget
            own_room = self.opened < self.limits.max_connections
            if own_room and (budget is None or budget.room(self)):
                return await self._connect(deadline, self._h1)
            if len(self._waiters) >= self.limits.max_pending:
                raise PoolOverflow("upstream_pool_overflow", f"{self.host}:{self.port} has no free connection")
            waiter: asyncio.Future[UpstreamConnection | None] = self._loop.create_future()
            self._waiters.append(waiter)
            if own_room and budget is not None:  # waiting for the cluster's budget, not for this pool
                budget.waiting.append(self)
            timer = self._loop.call_at(deadline, _expire, waiter)
            try:
                conn = await waiter
            finally:
                timer.cancel()
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
            if conn is not None:
                return conn
            fresh = False  # a slot freed up: look again (and open a connection of our own if there is room)

    def _h1(self) -> UpstreamConnection:
        return UpstreamConnection(self._loop, self.limits.max_response_bytes)

    def _h2(self) -> MultiplexedConnection:
        from meshbatch.http2.client import MultiplexedConnection, StreamLimits

        limits = StreamLimits(max_response_bytes=self.limits.max_response_bytes)
        return MultiplexedConnection(self._loop, limits, b"https" if self.limits.tls else b"http")

    def _h2_pool(self, limits: PoolLimits) -> None:
        for conn in list(self._idle):
            self.discard(conn)
        if self.streams is not None:
            self.streams.close()
        self.streams = None
        if limits.protocol == "http2":
            from meshbatch.http2.pool import StreamPool

            self.streams = StreamPool(
                self._loop, lambda deadline: self._connect(deadline, self._h2), self._h2_room, self._forget, self)

    def _h2_room(self) -> bool:
        budget = self.budget
        if self.opened >= self.limits.max_connections or budget is None or budget.room(self):
            return self.opened < self.limits.max_connections
        budget.waiting.append(self)  # (woken by `wake_one` when a connection of the cluster closes)
        return False

    async def _connect(self, deadline: float, factory: Callable[[], _Conn]) -> _Conn:
        self.opened += 1
        if self.budget is not None:
            self.budget.opened += 1
        self.connects += 1
        timeout = min(self.limits.connect_timeout, max(deadline - self._loop.time(), 0.0))
        tls = self.limits.tls
        try:
            async with asyncio.timeout(timeout):
                if tls is None:
                    _, conn = await self._loop.create_connection(factory, self.host, self.port)
                else:
                    h2 = self.limits.protocol == "http2"
                    _, conn = await self._loop.create_connection(
                        factory, self.host, self.port, ssl=tls.context(("h2",) if h2 else ()),
                        server_hostname=tls.server_name or "", ssl_handshake_timeout=max(timeout, 0.001))
                    tls_refusal = tls.refusal(conn.transport)
                    if tls_refusal:
                        conn.close()
                        raise ConnectFailed("upstream_tls_identity_mismatch", f"{self.host}:{self.port}: {tls_refusal}")
                    if h2 and selected_alpn(conn.transport) != "h2":
                        conn.close()
                        raise ConnectFailed("upstream_alpn_refused", f"{self.host}:{self.port}: {NOT_H2}")
        except BaseException as exc:
            self._slot_freed()
            error = connect_error(exc, f"{self.host}:{self.port}")
            if error is None:
                raise  # (cancelled)
            self.connect_failures += 1
            raise error from None
        conn.pooled = True
        transport = conn.transport
        if transport is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    # returning connections -----------------------------------------------------------------------
    def release(self, conn: UpstreamConnection) -> None:
        if not conn.usable or self.closed:
            self.discard(conn)
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        budget = self.budget
        if budget is not None and budget.waiting and budget.wanted(self):
            self.discard(conn)  # a caller of another endpoint waits for the cluster's budget: give the slot up
            return
        self._idle.append(conn)
        self._idle_since[conn] = self._loop.time()
        if self._reaper is None:
            self._reaper = self._loop.call_at(self._loop.time() + self.limits.idle_timeout, self._reap)

    def discard(self, conn: UpstreamConnection) -> None:
        conn.close()
        self._forget(conn)

    def _forget(self, conn: UpstreamConnection | MultiplexedConnection) -> None:
        if conn in self._idle_since:
            del self._idle_since[conn]
            self._idle.remove(conn)
        if conn.pooled:  # counted in `opened` until forgotten, once
            conn.pooled = False
            self._slot_freed()

    def _slot_freed(self) -> None:
        self.opened -= 1
        if not self.wake_one() and self.budget is not None:
            self.budget.freed(self)
        elif self.budget is not None:
            self.budget.opened -= 1

    def wake_one(self) -> bool:
        """Tell the oldest caller waiting here that a slot is free (it looks again); False if none waits."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return True
        return self.streams is not None and self.streams.wake_one()

    def oldest_idle_since(self) -> float:
        return min(self._idle_since.values()) if self._idle_since else float("inf")

    def close_oldest_idle(self) -> None:
        """Close the idle connection unused for the longest (another pool of the cluster needs the slot)."""
        if self._idle_since:
            oldest = min(self._idle_since, key=self._idle_since.__getitem__)
            self.discard(oldest)

    def _reap(self) -> None:
        self._reaper = None
        now = self._loop.time()
        cutoff = now - self.limits.idle_timeout
        for conn in [c for c, since in self._idle_since.items() if since <= cutoff or not c.usable]:
            self.discard(conn)
        if self._idle_since:
            oldest = min(self._idle_since.values())
            self._reaper = self._loop.call_at(oldest + self.limits.idle_timeout, self._reap)

    def close(self) -> None:
        """Close idle connections now; busy ones close when their exchange ends."""
        self.closed = True
        for conn in list(self._idle):
            self.discard(conn)
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(ConnectFailed("cluster_removed"))
        self._waiters.clear()
        if self.streams is not None:
            self.streams.close()
        budget = self.budget
        if budget is not None and self in budget.pools:
            budget.pools.remove(self)  # busy connections still count against it until they close


def _expire(waiter: asyncio.Future[UpstreamConnection | None]) -> None:
    if not waiter.done():
        waiter.set_exception(GatewayTimeout("upstream_pool_timeout", "no connection became free in time"))


__all__ = ["IDEMPOTENT", "ConnectionBudget", "EndpointPool", "PoolLimits", "UpstreamTls"]
