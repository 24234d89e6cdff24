"""The HTTP/2 side of an endpoint's pool over in-memory connections: one connection opened for many callers,
callers waiting for a free stream (bounded, with their deadline), a failed connect told to every waiting caller,
refused streams sent again, and a cancelled caller's stream reset."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import h2.events
import pytest
from h2.errors import ErrorCodes

from meshbatch.errors import ConnectFailed, GatewayTimeout, PoolOverflow, StreamRefused, UpstreamReset
from meshbatch.http.message import Response
from meshbatch.http.pool import ConnectionBudget, EndpointPool, PoolLimits
from meshbatch.http2.client import MultiplexedConnection, StreamLimits
from meshbatch.http2.pool import StreamPool
from testbed.h2_upstream_peer import Peer
from testbed.transport import connect
from testbed.upstream import refused_port


@dataclass
class Limits:
    max_pending: int = 100
    connect_timeout: float = 1.0
    idle_timeout: float = 30.0


class Endpoint:
    """Stands in for the endpoint's pool: opens in-memory connections (each with its peer), counts them."""

    def __init__(self, max_connections: int = 1, fail: ConnectFailed | None = None, **settings: int) -> None:
        self.limits = Limits()
        self.max_connections = max_connections
        self.fail = fail
        self.settings = settings
        self.opened = 0
        self.connects = 0
        self.peers: list[Peer] = []
        self.forgotten: list[MultiplexedConnection] = []
        self.pool = StreamPool(asyncio.get_running_loop(), self.connect, lambda: self.opened < self.max_connections,
                               self.forget, self)

    async def connect(self, deadline: float) -> MultiplexedConnection:
        self.connects += 1
        self.opened += 1
        await asyncio.sleep(0)  # (a connect takes a turn of the loop: callers arriving meanwhile wait for it)
        if self.fail is not None:
            self.opened -= 1
            raise self.fail
        conn = MultiplexedConnection(asyncio.get_running_loop(), StreamLimits())
        self.peers.append(Peer(conn, connect(conn), **self.settings))
        return conn

    def forget(self, conn: MultiplexedConnection) -> None:
        if conn not in self.forgotten:
            self.forgotten.append(conn)
            self.opened -= 1


def later(seconds: float = 60) -> float:
    return asyncio.get_running_loop().time() + seconds


async def turns(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def answer_all(peer: Peer, status: int = 200) -> list[int]:
    peer.read()
    ids = [sid for sid in peer.requests() if sid not in peer.answered]
    for sid in ids:
        peer.h2.send_headers(sid, [(b":status", str(status).encode())], end_stream=True)
        peer.answered.add(sid)
    peer.answer()
    return ids


def request(pool: StreamPool, method: bytes = b"GET", deadline: float | None = None) -> asyncio.Task[Response]:
    return asyncio.ensure_future(pool.request(method, b"/", [(b"host", b"svc")], b"", deadline or later()))


async def test_many_callers_share_one_connection_and_wait_for_free_streams() -> None:
    endpoint = Endpoint(max_concurrent_streams=2)
    calls = [request(endpoint.pool) for _ in range(5)]
    await turns()
    assert endpoint.connects == 1 and endpoint.pool.pending == 3
    peer = endpoint.peers[0]
    served: list[int] = []
    while len(served) < 5:
        served += answer_all(peer)
        await turns()
    assert served == [1, 3, 5, 7, 9]  # two at a time, in order
    assert [c.result().status for c in calls] == [200] * 5 and endpoint.pool.pending == 0


async def test_waiting_is_bounded_by_max_pending_and_by_the_deadline() -> None:
    endpoint = Endpoint(max_concurrent_streams=1)
    endpoint.limits.max_pending = 1
    first = request(endpoint.pool)
    await turns()
    waiting = request(endpoint.pool, deadline=later(-1))  # (its deadline is due at once)
    over = request(endpoint.pool)
    await turns()
    with pytest.raises(PoolOverflow):
        over.result()
    with pytest.raises(GatewayTimeout, match="upstream_pool_timeout"):
        waiting.result()
    assert not first.done()


async def test_a_failed_connect_is_every_waiting_callers_failure() -> None:
    endpoint = Endpoint(fail=ConnectFailed("upstream_connect_failed", "refused"))
    calls = [request(endpoint.pool) for _ in range(3)]
    await turns()
    assert endpoint.connects == 1
    for call in calls:
        with pytest.raises(ConnectFailed, match="upstream_connect_failed"):
            call.result()


async def test_refused_streams_are_sent_again_whatever_the_method() -> None:
    endpoint = Endpoint()
    call = request(endpoint.pool, b"POST")
    await turns()
    first = endpoint.peers[0]
    first.read()
    first.h2.close_connection(last_stream_id=0)  # processed nothing
    first.answer()
    await turns()
    assert endpoint.connects == 2  # the closed connection gave its slot back
    second = endpoint.peers[1]
    answer_all(second, 201)
    await turns()
    assert call.result().status == 201


async def test_refusals_are_not_replayed_for_ever() -> None:
    endpoint = Endpoint()
    call = request(endpoint.pool, b"POST")
    refused: set[int] = set()
    for _ in range(4):
        await turns()
        peer = endpoint.peers[-1]
        peer.read()
        for sid in set(peer.requests()) - refused:
            peer.h2.reset_stream(sid, ErrorCodes.REFUSED_STREAM)
            refused.add(sid)
        peer.answer()
    await turns()
    with pytest.raises(StreamRefused):
        call.result()


async def test_a_reset_is_not_replayed_for_a_request_that_is_not_idempotent() -> None:
    endpoint = Endpoint()
    call = request(endpoint.pool, b"POST")
    await turns()
    peer = endpoint.peers[0]
    peer.read()
    peer.h2.reset_stream(1, ErrorCodes.INTERNAL_ERROR)
    peer.answer()
    await turns()
    with pytest.raises(UpstreamReset):
        call.result()


async def test_a_cancelled_caller_has_its_stream_reset() -> None:
    endpoint = Endpoint()
    call = request(endpoint.pool)
    await turns()
    call.cancel()
    await turns()
    peer = endpoint.peers[0]
    peer.read()
    assert [(e.stream_id, e.error_code) for e in peer.events if isinstance(e, h2.events.StreamReset)] == \
        [(1, ErrorCodes.CANCEL)]


async def test_closing_the_pool_refuses_new_callers_and_closes_idle_connections() -> None:
    endpoint = Endpoint()
    call = request(endpoint.pool)
    await turns()
    answer_all(endpoint.peers[0])
    await turns()
    assert call.result().status == 200
    endpoint.pool.close()
    await turns()
    assert endpoint.opened == 0 and not endpoint.pool.conns
    with pytest.raises(ConnectFailed, match="cluster_removed"):
        await endpoint.pool.request(b"GET", b"/", [], b"", later())


async def test_a_caller_waiting_for_the_clusters_connection_budget_is_woken_when_it_frees() -> None:
    loop = asyncio.get_running_loop()
    budget = ConnectionBudget(1)
    other = EndpointPool("127.0.0.1", 1, PoolLimits(budget=budget), loop)  # (HTTP/1.1, holding the budget)
    budget.opened = other.opened = 1
    h2_pool = EndpointPool("127.0.0.1", refused_port(), PoolLimits(protocol="http2", budget=budget), loop)
    assert h2_pool.streams is not None
    call = asyncio.ensure_future(h2_pool.streams.request(b"GET", b"/", [], b"", later()))
    await turns()
    assert not call.done() and h2_pool.pending == 1 and h2_pool in budget.waiting
    other.opened = 0
    budget.freed(other)  # the other endpoint's connection closed
    with pytest.raises(ConnectFailed, match="upstream_connect_failed"):
        await call  # it tried at once (this endpoint refuses connections), not at its deadline
