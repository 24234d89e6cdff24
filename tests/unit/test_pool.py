"""The upstream pool and connection against a scripted asyncio server on 127.0.0.1 (real sockets)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from meshbatch.errors import (
    BadGateway,
    ConnectFailed,
    GatewayTimeout,
    PoolOverflow,
    ProxyError,
    UpstreamReset,
)
from meshbatch.http.pool import ConnectionBudget, EndpointPool, PoolLimits
from meshbatch.http.serialize import encode_request
from testbed.upstream import refused_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[bool]]
OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


class Script:
    """A server whose answer to request i (over all connections) is `handler(reader, writer, i)`."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests = 0
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> Script:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                if length:
                    await reader.readexactly(length)
                index = self.requests
                self.requests += 1
                if not await self.handler(reader, writer, index):
                    return
                await writer.drain()
        finally:
            writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


async def ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> bool:
    writer.write(OK)
    return True


@pytest.fixture
async def script() -> AsyncIterator[Callable[[Handler], Awaitable[Script]]]:
    started: list[Script] = []

    async def make(handler: Handler) -> Script:
        server = await Script(handler).start()
        started.append(server)
        return server

    yield make
    for server in started:
        await server.stop()


def pool_for(port: int, **limits: float) -> EndpointPool:
    return EndpointPool("127.0.0.1", port, PoolLimits(**limits), asyncio.get_running_loop())  # type: ignore[arg-type]


def get(path: bytes = b"/") -> bytes:
    return encode_request(b"GET", path, [(b"host", b"up")], b"")


def post(body: bytes = b"x") -> bytes:
    return encode_request(b"POST", b"/", [(b"host", b"up")], body)


def deadline(seconds: float = 2.0) -> float:
    return asyncio.get_running_loop().time() + seconds


async def test_keep_alive_connection_is_reused(script: Callable[[Handler], Awaitable[Script]]) -> None:
    server = await script(ok)
    pool = pool_for(server.port)
    for _ in range(5):
        response = await pool.request(b"GET", get(), deadline())
        assert (response.status, response.body) == (200, b"ok")
    assert server.connections == 1
    assert (pool.opened, pool.idle, pool.active, pool.connects) == (1, 1, 0, 1)
    pool.close()


async def test_max_connections_makes_callers_wait(script: Callable[[Handler], Awaitable[Script]]) -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> bool:
        await asyncio.sleep(0.02)
        writer.write(OK)
        return True

    server = await script(slow)
    pool = pool_for(server.port, max_connections=2)
    results = await asyncio.gather(*(pool.request(b"GET", get(), deadline()) for _ in range(6)))
    assert [r.status for r in results] == [200] * 6
    assert server.connections == 2
    assert pool.opened == 2
    pool.close()


async def test_a_cluster_budget_caps_connections_across_pools(
        script: Callable[[Handler], Awaitable[Script]]) -> None:
    gate = asyncio.Event()
    live = 0
    most = 0

    async def held(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> bool:
        nonlocal live, most
        live += 1
        most = max(most, live)
        await gate.wait()
        live -= 1
        writer.write(OK)
        return True

    one, two = await script(held), await script(held)
    budget = ConnectionBudget(2)
    limits = PoolLimits(max_connections=10, budget=budget)
    loop = asyncio.get_running_loop()
    a = EndpointPool("127.0.0.1", one.port, limits, loop)
    b = EndpointPool("127.0.0.1", two.port, limits, loop)
    calls = [loop.create_task(pool.request(b"GET", get(), deadline())) for pool in (a, a, b, b, b)]
    while one.requests + two.requests < 2:
        await asyncio.sleep(0)
    assert budget.opened == 2 and a.pending + b.pending == 3  # the rest wait: none refused, none over the cap
    gate.set()
    results = await asyncio.gather(*calls)
    assert [r.status for r in results] == [200] * 5
    assert most <= 2  # never more than two exchanges (two connections) at once across both endpoints
    assert (one.connections, two.connections) == (2, 2)  # a gave its connections up as b's callers waited
    assert budget.opened == a.opened + b.opened <= 2
    a.close()
    b.close()
    assert budget.opened == 0 and budget.pools == []


async def test_a_cluster_budget_takes_an_idle_connection_of_another_pool(
        script: Callable[[Handler], Awaitable[Script]]) -> None:
    one, two = await script(ok), await script(ok)
    budget = ConnectionBudget(1)
    limits = PoolLimits(budget=budget)
    loop = asyncio.get_running_loop()
    a = EndpointPool("127.0.0.1", one.port, limits, loop)
    b = EndpointPool("127.0.0.1", two.port, limits, loop)
    assert (await a.request(b"GET", get(), deadline())).status == 200
    assert (a.idle, budget.opened) == (1, 1)
    assert (await b.request(b"GET", get(), deadline())).status == 200  # a's idle connection made room
    assert (a.opened, b.opened, budget.opened) == (0, 1, 1)
    a.close()
    b.close()
    assert budget.opened == 0


async def test_new_limits_move_open_connections_to_the_new_budget(
        script: Callable[[Handler], Awaitable[Script]]) -> None:
    server = await script(ok)
    old, new = ConnectionBudget(4), ConnectionBudget(4)
    pool = EndpointPool("127.0.0.1", server.port, PoolLimits(budget=old), asyncio.get_running_loop())
    await pool.request(b"GET", get(), deadline())
    pool.set_limits(PoolLimits(budget=new))
    assert (old.opened, new.opened, old.pools, new.pools) == (0, 1, [], [pool])
    pool.close()
    assert new.opened == 0


async def test_pending_beyond_the_limit_overflows(script: Callable[[Handler], Awaitable[Script]]) -> None:
    gate = asyncio.Event()

    async def held(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> bool:
        await gate.wait()
        writer.write(OK)
        return True

    server = await script(held)
    pool = pool_for(server.port, max_connections=1, max_pending=1)
    first = asyncio.ensure_future(pool.request(b"GET", get(), deadline()))
    await asyncio.sleep(0)
    while pool.opened < 1:
        await asyncio.sleep(0.005)
    second = asyncio.ensure_future(pool.request(b"GET", get(), deadline()))
    while pool.pending < 1:
        await asyncio.sleep(0.005)
    with pytest.raises(PoolOverflow) as info:
        await pool.request(b"GET", get(), deadline())
    assert (info.value.status, info.value.reason) == (503, "upstream_pool_overflow")
    gate.set()
    assert [r.status for r in await asyncio.gather(first, second)] == [200, 200]
    pool.close()


async def test_waiting_for_a_connection_times_out(script: Callable[[Handler], Awaitable[Script]]) -> None:
    gate = asyncio.Event()

    async def held(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> bool:
        await gate.wait()
        writer.write(OK)
        return True

    server = await script(held)
    pool = pool_for(server.port, max_connections=1)
    first = asyncio.ensure_future(pool.request(b"GET", get(), deadline()))
    while pool.opened < 1:
        await asyncio.sleep(0.005)
    with pytest.raises(GatewayTimeout) as info:
        await pool.request(b"GET", get(), deadline(0.05))
    assert (info.value.status, info.value.reason) == (504, "upstream_pool_timeout")
    assert pool.pending == 0
    gate.set()
    assert (await first).status == 200
    pool.close()


async def test_connection_refused_is_503() -> None:
    pool = pool_for(refused_port())
    with pytest.raises(ConnectFailed) as info:
        await pool.request(b"GET", get(), deadline())
    assert (info.value.status, info.value.reason) == (503, "upstream_connect_failed")
    assert (pool.opened, pool.connect_failures) == (0, 1)


async def test_no_answer_in_time_is_504_and_the_connection_is_dropped(
    script: Callable[[Handler], Awaitable[Script]],
) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> bool:
        await reader.read()  # until the pool gives up and closes
        return False

    server = await script(silent)
    pool = pool_for(server.port)
    with pytest.raises(GatewayTimeout) as info:
        await pool.request(b"GET", get(), deadline(0.1))
    assert (info.value.status, info.value.reason) == (504, "upstream_timeout")
    assert (pool.opened, pool.idle) == (0, 0)


async def test_malformed_answer_is_502(script: Callable[[Handler], Awaitable[Script]]) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> bool:
        writer.write(b"HTTP/1.1 2OO OK\r\n\r\n")
        return True

    server = await script(garbage)
    pool = pool_for(server.port)
    with pytest.raises(BadGateway) as info:
        await pool.request(b"GET", get(), deadline())
    assert (info.value.status, info.value.reason) == (502, "bad_upstream_response")
    assert pool.opened == 0


async def test_close_mid_answer_is_a_reset(script: Callable[[Handler], Awaitable[Script]]) -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
        return False

    server = await script(cut)
    pool = pool_for(server.port)
    with pytest.raises(UpstreamReset) as info:
        await pool.request(b"GET", get(), deadline())
    assert (info.value.status, info.value.reason) == (502, "upstream_reset")
    assert pool.opened == 0


async def close_on_second(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> bool:
    # A server that closes a kept-alive connection just as the next request arrives: no byte of answer.
    if index == 1:
        return False
    writer.write(OK)
    return True


async def test_idempotent_request_is_replayed_on_a_fresh_connection(
    script: Callable[[Handler], Awaitable[Script]],
) -> None:
    # The replay opens a connection (a suspension) after the reset was caught: it leaves no exception behind.
    # Compiled code that suspended in the `except` block left the reset as every other task's sys.exc_info()
    # meanwhile, and as the context of every exception raised after it (tests/unit/test_compiled_rules.py).
    server = await script(close_on_second)
    pool = pool_for(server.port)
    assert (await pool.request(b"GET", get(), deadline())).status == 200
    seen: list[BaseException | None] = []
    replay = asyncio.ensure_future(pool.request(b"GET", get(), deadline()))
    while not replay.done():
        seen.append(sys.exc_info()[1])
        await asyncio.sleep(0)
    assert replay.result().status == 200
    assert server.connections == 2 and server.requests == 3
    assert pool.opened == 1
    assert seen and set(seen) == {None}
    try:
        raise KeyError("later")
    except KeyError as error:
        assert error.__context__ is None
    pool.close()


async def test_post_is_never_replayed(script: Callable[[Handler], Awaitable[Script]]) -> None:
    server = await script(close_on_second)
    pool = pool_for(server.port)
    assert (await pool.request(b"POST", post(), deadline())).status == 200
    with pytest.raises(UpstreamReset):
        await pool.request(b"POST", post(), deadline())
    assert server.requests == 2
    assert pool.opened == 0


async def test_chunked_and_close_delimited_answers(script: Callable[[Handler], Awaitable[Script]]) -> None:
    async def framing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> bool:
        if index == 0:
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-a: 1\r\n\r\n"
                         b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n")
            return True
        writer.write(b"HTTP/1.1 200 OK\r\nx-b: 2\r\n\r\nuntil the end")
        return False

    server = await script(framing)
    pool = pool_for(server.port)
    first = await pool.request(b"GET", get(), deadline())
    assert first.body == b"abcdefg"
    assert first.headers == [(b"x-a", b"1")]  # framing headers are the pool's business, not the caller's
    second = await pool.request(b"GET", get(), deadline())
    assert (second.body, second.headers) == (b"until the end", [(b"x-b", b"2")])
    assert server.connections == 1
    assert pool.opened == 0  # a close-delimited answer ends its connection


async def test_interim_100_continue_is_skipped(script: Callable[[Handler], Awaitable[Script]]) -> None:
    async def interim(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> bool:
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + OK)
        return True

    server = await script(interim)
    pool = pool_for(server.port)
    response = await pool.request(b"POST", post(), deadline())
    assert (response.status, response.body) == (200, b"ok")
    assert (await pool.request(b"POST", post(), deadline())).status == 200
    assert server.connections == 1
    pool.close()


async def test_head_answer_does_not_wait_for_a_body(script: Callable[[Handler], Awaitable[Script]]) -> None:
    async def head(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n")
        return True

    server = await script(head)
    pool = pool_for(server.port)
    response = await pool.request(b"HEAD", encode_request(b"HEAD", b"/", [], b""), deadline(1))
    assert (response.status, response.body) == (200, b"")
    pool.close()


async def test_too_large_answer_is_502(script: Callable[[Handler], Awaitable[Script]]) -> None:
    async def big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n" + b"x" * 100)
        return True

    server = await script(big)
    pool = pool_for(server.port, max_response_bytes=50)
    with pytest.raises(BadGateway) as info:
        await pool.request(b"GET", get(), deadline())
    assert info.value.reason == "upstream_response_too_large"


async def test_too_large_answer_head_is_502(script: Callable[[Handler], Awaitable[Script]]) -> None:
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nx-big: " + b"h" * 70_000 + b"\r\n\r\n")
        return True

    server = await script(endless)
    pool = pool_for(server.port)
    with pytest.raises(BadGateway) as info:
        await pool.request(b"GET", get(), deadline())
    assert info.value.reason == "upstream_headers_too_large"
    assert pool.opened == 0


async def test_cancelled_caller_frees_its_connection(script: Callable[[Handler], Awaitable[Script]]) -> None:
    gate = asyncio.Event()

    async def held(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> bool:
        if index == 0:
            await gate.wait()
            return False
        writer.write(OK)
        return True

    server = await script(held)
    pool = pool_for(server.port, max_connections=1)
    task = asyncio.ensure_future(pool.request(b"GET", get(), deadline()))
    while server.requests < 1:
        await asyncio.sleep(0.005)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pool.opened == 0
    assert (await pool.request(b"GET", get(), deadline())).status == 200  # the slot is free again
    gate.set()
    pool.close()


async def test_idle_connections_are_reaped(script: Callable[[Handler], Awaitable[Script]]) -> None:
    server = await script(ok)
    pool = pool_for(server.port, idle_timeout=0.05)
    await pool.request(b"GET", get(), deadline())
    assert pool.idle == 1
    loop = asyncio.get_running_loop()
    limit = loop.time() + 2
    while pool.opened and loop.time() < limit:
        await asyncio.sleep(0.01)
    assert (pool.opened, pool.idle) == (0, 0)


async def test_an_idle_connection_closed_by_the_server_is_not_used(
    script: Callable[[Handler], Awaitable[Script]],
) -> None:
    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> bool:
        writer.write(OK)
        return False  # closes after answering, without saying so

    server = await script(once)
    pool = pool_for(server.port)
    await pool.request(b"POST", post(), deadline())
    loop = asyncio.get_running_loop()
    limit = loop.time() + 2
    while not pool._idle[0].closed and loop.time() < limit:  # the EOF arrives
        await asyncio.sleep(0.005)
    response = await pool.request(b"POST", post(), deadline())
    assert response.status == 200
    assert server.connections == 2


async def test_close_fails_waiters_and_refuses_new_requests(
    script: Callable[[Handler], Awaitable[Script]],
) -> None:
    gate = asyncio.Event()

    async def held(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> bool:
        await gate.wait()
        writer.write(OK)
        return True

    server = await script(held)
    pool = pool_for(server.port, max_connections=1)
    first = asyncio.ensure_future(pool.request(b"GET", get(), deadline()))
    while pool.opened < 1:
        await asyncio.sleep(0.005)
    waiting = asyncio.ensure_future(pool.request(b"GET", get(), deadline()))
    while pool.pending < 1:
        await asyncio.sleep(0.005)
    pool.close()
    with pytest.raises(ProxyError) as info:
        await waiting
    assert info.value.status == 503
    gate.set()
    assert (await first).status == 200  # the exchange in flight finishes
    with pytest.raises(ConnectFailed):
        await pool.request(b"GET", get(), deadline())
    assert pool.opened == 0
