"""The upstream exchange (upstream/exchange.py) without sockets: pick, admit, account, send, observe, for the
general path (`send`) and the fast path (`start` and its `FastExchange`). Each endpoint's pool is a fake that
answers what a test tells it, so every accounting rule is checked on its own: requests and in-flight counts, the
cluster's error counts, the guard's breakers, and what an abandoned exchange leaves behind (no verdict)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from upstream_support import fakes_need_the_pure_build

from meshbatch.config.model import CircuitBreakers
from meshbatch.config.model import Cluster as ClusterConfig
from meshbatch.errors import CircuitOpen, ConnectFailed, PoolOverflow, ProxyError, Unavailable, UpstreamReset
from meshbatch.http.message import Response
from meshbatch.upstream import exchange
from meshbatch.upstream.cluster import Cluster
from meshbatch.upstream.endpoint import Endpoint
from meshbatch.upstream.guard import BREAKER_OPEN, ClusterGuard
from meshbatch.upstream.target import Target

pytestmark = fakes_need_the_pure_build

HEADERS = [(b"host", b"svc")]


class FakeConnection:
    """An idle keep-alive connection: `start` records what the fast path sent; the test completes it."""

    def __init__(self, uses: int = 1) -> None:
        self.uses = uses
        self.sent: list[bytes] = []
        self.abandoned = False
        self.future: Any = None

    def start(self, data: bytes, head: bool, deadline: float, future: Any, stream_limit: int) -> None:
        self.sent.append(data)
        self.future = future

    def abandon(self) -> None:
        self.abandoned = True


class FakeLimits:
    max_connections = 10


class FakePool:
    """An endpoint's pool: idle connections to take, and one scripted outcome per `request`."""

    def __init__(self) -> None:
        self.idle_conns: list[FakeConnection] = []
        self.outcomes: list[Response | ProxyError | asyncio.Future[Response]] = []
        self.sent: list[bytes] = []
        self.released: list[FakeConnection] = []
        self.discarded: list[FakeConnection] = []
        self.closed = False
        self.limits = FakeLimits()
        self.streams = None  # (HTTP/1.1)
        self.opened = 0
        self.pending = 0

    @property
    def idle(self) -> int:
        return len(self.idle_conns)

    async def request(self, method: bytes, data: bytes, deadline: float, stream_limit: int = 0,
                      upload: object = None) -> Response:
        self.sent.append(data)
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, asyncio.Future):
            return await outcome
        if isinstance(outcome, ProxyError):
            raise outcome
        return outcome

    def take_idle(self) -> FakeConnection | None:
        return self.idle_conns.pop() if self.idle_conns else None

    def release(self, conn: FakeConnection) -> None:
        self.released.append(conn)

    def discard(self, conn: FakeConnection) -> None:
        self.discarded.append(conn)

    def close(self) -> None:
        self.closed = True


def cluster(loop: asyncio.AbstractEventLoop, n: int = 2) -> tuple[Cluster, list[FakePool]]:
    config = ClusterConfig.model_validate({"name": "svc", "endpoints": [f"127.0.0.1:{1001 + i}" for i in range(n)]})
    made = Cluster(config, loop)
    pools = []
    for endpoint in made.endpoints:
        pool = FakePool()
        endpoint.pool = pool  # type: ignore[assignment]
        pools.append(pool)
    return made, pools


def guard(**endpoint: Any) -> ClusterGuard:
    return ClusterGuard("svc", CircuitBreakers.model_validate({"endpoint": endpoint} if endpoint else {}))


def pool_of(endpoint: Endpoint) -> FakePool:
    pool = endpoint.pool
    assert isinstance(pool, FakePool)
    return pool


# pick ------------------------------------------------------------------------------------------------------

async def test_pick_avoids_the_endpoints_already_tried() -> None:
    made, _ = cluster(asyncio.get_running_loop())
    first, second = made.endpoints
    target = Target(made)
    assert {exchange.pick(target, None, [first], 0.0) for _ in range(4)} == {second}


async def test_no_endpoint_left_is_503_no_healthy_upstream() -> None:
    made, _ = cluster(asyncio.get_running_loop(), n=1)
    made.set_endpoints([])  # discovery took them all away
    with pytest.raises(Unavailable) as refused:
        exchange.pick(Target(made), None, (), 0.0)
    assert refused.value.reason == "no_healthy_upstream"


async def test_every_endpoint_held_by_its_breaker_is_503_circuit_open() -> None:
    made, _ = cluster(asyncio.get_running_loop())
    cb = guard(consecutive_failures=1, open_ms=60_000)
    target = Target(made, cb)
    for endpoint in made.endpoints:
        cb.record(endpoint, 503, 0.0)
        assert endpoint.down & BREAKER_OPEN
    with pytest.raises(CircuitOpen) as refused:
        exchange.pick(target, None, (), 1.0)
    assert refused.value.reason == "circuit_open"


async def test_a_threshold_crossed_refuses_before_anything_is_counted() -> None:
    made, _ = cluster(asyncio.get_running_loop())
    cb = ClusterGuard("svc", CircuitBreakers(max_requests=1))
    cb.active = 1
    with pytest.raises(CircuitOpen) as refused:
        exchange.pick(Target(made, cb), None, (), 0.0)
    assert refused.value.reason == "max_requests_overflow"
    assert all(e.requests == 0 and e.active == 0 for e in made.endpoints)


# send: the general path ------------------------------------------------------------------------------------

async def test_an_answer_is_counted_once_and_names_its_endpoint() -> None:
    loop = asyncio.get_running_loop()
    made, _ = cluster(loop, n=1)
    endpoint = made.endpoints[0]
    pool_of(endpoint).outcomes.append(Response(200, [], b"ok"))
    cb = guard(consecutive_failures=1)
    attempt = exchange.Attempt()
    response = await exchange.send(Target(made, cb), b"GET", b"/x", HEADERS, b"", loop.time() + 1, None, loop,
                                   attempt)
    assert response.status == 200 and response.upstream == endpoint.address
    assert pool_of(endpoint).sent == [b"GET /x HTTP/1.1\r\nhost: svc\r\n\r\n"]
    assert (endpoint.requests, endpoint.active, endpoint.errors, cb.active) == (1, 0, 0, 0)
    assert attempt.tried == [endpoint]


async def test_a_failure_is_counted_by_reason_and_told_to_the_breaker() -> None:
    loop = asyncio.get_running_loop()
    made, _ = cluster(loop, n=1)
    endpoint = made.endpoints[0]
    pool_of(endpoint).outcomes.append(ConnectFailed())
    cb = guard(consecutive_failures=1)
    with pytest.raises(ConnectFailed):
        await exchange.send(Target(made, cb), b"GET", b"/", HEADERS, b"", loop.time() + 1, None, loop)
    assert (endpoint.requests, endpoint.active, endpoint.errors, cb.active) == (1, 0, 1, 0)
    assert made.upstream_errors == {"upstream_connect_failed": 1}
    assert endpoint.down & BREAKER_OPEN  # a connect failure counts as the endpoint's 503


async def test_our_own_failure_is_counted_but_is_no_verdict_on_the_endpoint() -> None:
    loop = asyncio.get_running_loop()
    made, _ = cluster(loop, n=1)
    endpoint = made.endpoints[0]
    pool_of(endpoint).outcomes.append(PoolOverflow())
    cb = guard(consecutive_failures=1)
    with pytest.raises(PoolOverflow):
        await exchange.send(Target(made, cb), b"GET", b"/", HEADERS, b"", loop.time() + 1, None, loop)
    assert made.upstream_errors == {"upstream_pool_overflow": 1}
    assert not endpoint.down and endpoint.penalty == 0


async def test_an_exchange_abandoned_by_its_caller_leaves_no_trace_on_the_endpoint() -> None:
    loop = asyncio.get_running_loop()
    made, _ = cluster(loop, n=1)
    endpoint = made.endpoints[0]
    hanging: asyncio.Future[Response] = loop.create_future()
    pool_of(endpoint).outcomes.append(hanging)
    cb = guard(consecutive_failures=1)
    task = loop.create_task(exchange.send(Target(made, cb), b"GET", b"/", HEADERS, b"", loop.time() + 1, None,
                                          loop))
    await asyncio.sleep(0)
    assert endpoint.active == 1 and cb.active == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (endpoint.active, endpoint.errors, cb.active) == (0, 0, 0) and not made.upstream_errors
    assert not endpoint.down


async def test_an_endpoint_picked_by_the_fast_path_is_used_as_it_is() -> None:
    loop = asyncio.get_running_loop()
    made, _ = cluster(loop)
    chosen = made.endpoints[1]
    pool_of(chosen).outcomes.append(Response(204))
    response = await exchange.send(Target(made), b"GET", b"/", HEADERS, b"", loop.time() + 1, None, loop,
                                   endpoint=chosen)
    assert response.upstream == chosen.address and made.endpoints[0].requests == 0


# start: the fast path --------------------------------------------------------------------------------------

def fast(loop: asyncio.AbstractEventLoop, target: Target, endpoint: Endpoint,
         answers: list[Response | None], method: bytes = b"GET") -> exchange.FastExchange | None:
    return exchange.start(target, endpoint, method, b"/f", HEADERS, b"", loop.time() + 1, answers.append, loop,
                          via=b"1.1 meshbatch")


async def test_no_idle_connection_means_no_fast_exchange_and_nothing_counted() -> None:
    loop = asyncio.get_running_loop()
    made, _ = cluster(loop, n=1)
    endpoint = made.endpoints[0]
    assert fast(loop, Target(made), endpoint, []) is None
    assert endpoint.requests == 0 and endpoint.active == 0


async def test_a_fast_answer_releases_its_connection_and_is_answered_once_with_via() -> None:
    loop = asyncio.get_running_loop()
    made, _ = cluster(loop, n=1)
    endpoint = made.endpoints[0]
    conn = FakeConnection()
    pool_of(endpoint).idle_conns.append(conn)
    answers: list[Response | None] = []
    started = fast(loop, Target(made), endpoint, answers)
    assert started is not None and conn.future is started and not started.done()
    assert conn.sent == [b"GET /f HTTP/1.1\r\nhost: svc\r\n\r\n"] and endpoint.active == 1
    started.set_result(Response(200, [], b"ok"))
    assert started.done() and pool_of(endpoint).released == [conn]
    assert len(answers) == 1 and answers[0] is not None
    assert (b"via", b"1.1 meshbatch") in answers[0].headers and answers[0].upstream == endpoint.address
    assert (endpoint.requests, endpoint.active) == (1, 0)
    started.cancel()  # too late: the answer is out
    assert not conn.abandoned and pool_of(endpoint).discarded == []


async def test_a_reused_connection_found_dead_asks_the_general_path_to_replay_an_idempotent_request() -> None:
    loop = asyncio.get_running_loop()
    made, _ = cluster(loop, n=1)
    endpoint = made.endpoints[0]
    conn = FakeConnection(uses=3)
    pool_of(endpoint).idle_conns.append(conn)
    answers: list[Response | None] = []
    started = fast(loop, Target(made), endpoint, answers)
    assert started is not None
    started.set_exception(UpstreamReset())
    assert answers == [None]  # replay it
    assert pool_of(endpoint).discarded == [conn] and endpoint.active == 0
    assert endpoint.errors == 0 and not made.upstream_errors  # no verdict: the connection was stale


@pytest.mark.parametrize(("uses", "method"), [(1, b"GET"), (3, b"POST")])
async def test_a_reset_that_cannot_be_replayed_is_answered_and_counted(uses: int, method: bytes) -> None:
    loop = asyncio.get_running_loop()
    made, _ = cluster(loop, n=1)
    endpoint = made.endpoints[0]
    pool_of(endpoint).idle_conns.append(FakeConnection(uses=uses))
    answers: list[Response | None] = []
    started = fast(loop, Target(made), endpoint, answers, method)
    assert started is not None
    started.set_exception(UpstreamReset())
    assert len(answers) == 1 and answers[0] is not None and answers[0].status == 502
    assert endpoint.errors == 1 and made.upstream_errors == {"upstream_reset": 1}


async def test_a_fast_exchange_cancelled_by_its_caller_drops_the_connection_and_gives_no_verdict() -> None:
    loop = asyncio.get_running_loop()
    made, _ = cluster(loop, n=1)
    endpoint = made.endpoints[0]
    conn = FakeConnection()
    pool_of(endpoint).idle_conns.append(conn)
    cb = guard(consecutive_failures=1)
    answers: list[Response | None] = []
    started = fast(loop, Target(made, cb), endpoint, answers)
    assert started is not None and cb.active == 1
    started.cancel()
    assert conn.abandoned and pool_of(endpoint).discarded == [conn]
    assert (endpoint.active, endpoint.errors, cb.active) == (0, 0, 0) and answers == []
    assert not endpoint.down
