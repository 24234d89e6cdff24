"""The fast path's HTTP/2 form (upstream/exchange.py `FastStream`) over an in-memory connection and h2's server
side as the upstream: a request on a free stream answered once with `via` and counted on its endpoint; a stream
the upstream refused goes back to the general path; a caller that leaves resets its stream only; no free stream,
or callers already waiting for one, means no fast exchange and nothing counted."""

from __future__ import annotations

import asyncio
from typing import Any

from h2.errors import ErrorCodes
from upstream_support import fakes_need_the_pure_build

from meshbatch.config.model import Cluster as ClusterConfig
from meshbatch.http.message import Response
from meshbatch.http2.client import MultiplexedConnection, StreamLimits
from meshbatch.http2.pool import StreamPool
from meshbatch.upstream import exchange
from meshbatch.upstream.cluster import Cluster
from meshbatch.upstream.endpoint import Endpoint
from meshbatch.upstream.target import Target
from testbed.h2_upstream_peer import Peer
from testbed.transport import connect

pytestmark = fakes_need_the_pure_build


class Limits:
    max_pending = 10
    connect_timeout = 1.0
    idle_timeout = 30.0


class Pool:
    """An endpoint's pool whose HTTP/2 side holds one in-memory connection (its upstream: `peer`)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, **settings: int) -> None:
        self.limits = Limits()
        self.streams = StreamPool(loop, self._connect, lambda: False, lambda conn: None, self)
        conn = MultiplexedConnection(loop, StreamLimits())
        self.peer = Peer(conn, connect(conn), **settings)
        self.streams.conns.append(conn)

    async def _connect(self, deadline: float) -> MultiplexedConnection:
        raise AssertionError("no connect expected")


def setup(**settings: int) -> tuple[Target, Endpoint, Pool, list[Response | None], Any]:
    loop = asyncio.get_running_loop()
    config = ClusterConfig.model_validate({"name": "svc", "endpoints": ["127.0.0.1:1001"]})
    made = Cluster(config, loop)
    endpoint = made.endpoints[0]
    pool = Pool(loop, **settings)
    endpoint.pool = pool  # type: ignore[assignment]
    answers: list[Response | None] = []
    started = exchange.start(Target(made), endpoint, b"POST", b"/pkg.Svc/Call", [(b"host", b"svc")], b"msg",
                             loop.time() + 60, answers.append, loop, b"1.1 meshbatch")
    return Target(made), endpoint, pool, answers, started


async def test_an_answer_on_a_free_stream_is_given_once_with_via_and_counted() -> None:
    _, endpoint, pool, answers, started = setup()
    assert isinstance(started, exchange.FastStream) and endpoint.active == 1
    peer = pool.peer
    peer.read()
    assert peer.body(1) == b"msg"
    peer.h2.send_headers(1, [(b":status", b"200"), (b"content-type", b"application/grpc")])
    peer.h2.send_data(1, b"answer")
    peer.h2.send_headers(1, [(b"grpc-status", b"0")], end_stream=True)
    peer.answer()
    await asyncio.sleep(0)
    assert len(answers) == 1 and answers[0] is not None and answers[0].body == b"answer"
    assert (b"via", b"1.1 meshbatch") in answers[0].headers and answers[0].upstream == endpoint.address
    assert answers[0].trailers is None  # the caller did not say `TE: trailers`
    assert (endpoint.requests, endpoint.active, endpoint.errors) == (1, 0, 0)
    started.cancel()  # too late: the answer is out
    assert peer.resets() == []


async def test_the_answer_reaches_the_caller_within_the_upstreams_read() -> None:
    """No turn of the loop between the upstream's last frame and the caller's answer (nor for a failure)."""
    _, _, pool, answers, started = setup()
    assert started is not None
    pool.peer.read()
    pool.peer.h2.send_headers(1, [(b":status", b"200")], end_stream=True)
    pool.peer.answer()
    assert len(answers) == 1 and answers[0] is not None and answers[0].status == 200
    _, endpoint, pool, answers, started = setup()
    pool.peer.read()
    pool.peer.h2.reset_stream(1, ErrorCodes.INTERNAL_ERROR)
    pool.peer.answer()
    assert len(answers) == 1 and answers[0] is not None and answers[0].status == 502
    assert endpoint.active == 0


async def test_a_refused_stream_goes_back_to_the_general_path_without_a_verdict() -> None:
    _, endpoint, pool, answers, started = setup()
    assert started is not None
    pool.peer.read()
    pool.peer.h2.reset_stream(1, ErrorCodes.REFUSED_STREAM)
    pool.peer.answer()
    await asyncio.sleep(0)
    assert answers == [None]  # replay it
    assert (endpoint.active, endpoint.errors) == (0, 0)


async def test_a_caller_that_leaves_resets_its_stream_only() -> None:
    _, endpoint, pool, answers, started = setup()
    assert started is not None
    started.cancel()
    pool.peer.read()
    assert pool.peer.resets() == [(1, ErrorCodes.CANCEL)]
    assert (endpoint.active, endpoint.errors) == (0, 0) and answers == []
    assert pool.streams.conns[0].available  # the connection goes on


async def test_no_free_stream_or_callers_waiting_means_no_fast_exchange_and_nothing_counted() -> None:
    target, endpoint, pool, answers, started = setup(max_concurrent_streams=2)
    assert started is not None  # it took one of the two streams
    loop = asyncio.get_running_loop()
    pool.streams._waiters.append(loop.create_future())  # a caller waits for a stream: it goes first
    assert exchange.start(target, endpoint, b"GET", b"/", [], b"", loop.time() + 60, answers.append, loop) is None
    pool.streams._waiters.clear()
    assert exchange.start(target, endpoint, b"GET", b"/", [], b"", loop.time() + 60, answers.append, loop)
    assert exchange.start(target, endpoint, b"GET", b"/", [], b"", loop.time() + 60, answers.append, loop) is None
    assert endpoint.requests == 2 and answers == []
