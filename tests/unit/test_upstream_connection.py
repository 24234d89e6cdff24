"""`UpstreamConnection` without sockets: bytes in through `data_received`, an in-memory transport, and a
recorder in place of the future (support/transport.py) that also notes whether the connection was reusable
at the moment the outcome was delivered."""

from __future__ import annotations

import asyncio

import pytest

from meshbatch.errors import BadGateway, ProxyError, UpstreamReset
from meshbatch.http.client import UpstreamConnection
from meshbatch.http.pool import EndpointPool, PoolLimits
from testbed.transport import FakeTransport, Recorder, connect

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-id: one\r\n\r\nfirst"
CHUNKED = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nfir\r\n2\r\nst\r\n0\r\n\r\n"
SECOND = b"HTTP/1.1 401 Unauthorized\r\nset-cookie: session=victim\r\ncontent-length: 0\r\n\r\n"


def make(max_response_bytes: int = 1 << 20) -> tuple[UpstreamConnection, FakeTransport]:
    conn = UpstreamConnection(asyncio.get_running_loop(), max_response_bytes)
    return conn, connect(conn)


def exchange(conn: UpstreamConnection, *chunks: bytes, head: bool = False) -> Recorder:
    recorder = Recorder(conn)
    conn.start(b"GET / HTTP/1.1\r\nhost: up\r\n\r\n", head, asyncio.get_running_loop().time() + 60, recorder)
    for chunk in chunks:
        conn.data_received(chunk)
    return recorder


async def test_a_clean_answer_leaves_the_connection_reusable() -> None:
    conn, transport = make()
    recorder = exchange(conn, OK)
    assert [(r.status, r.body) for r in recorder.results] == [(200, b"first")]
    assert recorder.usable_then and conn.usable and not transport.closing


@pytest.mark.parametrize("trailing", [SECOND, b"garbage", b"\r\n", b"\n", b"\r\n\r\n", b"H"])
async def test_any_byte_after_the_answer_makes_it_single_use(trailing: bytes) -> None:
    conn, transport = make()
    recorder = exchange(conn, OK + trailing)
    assert [(r.status, r.body) for r in recorder.results] == [(200, b"first")]  # the answer itself stands
    assert recorder.usable_then is False  # decided before the outcome went out, with every byte seen
    assert not conn.usable and transport.closing


@pytest.mark.parametrize("trailing", [SECOND, b"garbage", b"\r\n", b"\n", b"\r\n\r\n"])
async def test_any_byte_after_a_chunked_answer_makes_it_single_use(trailing: bytes) -> None:
    conn, transport = make()
    recorder = exchange(conn, CHUNKED + trailing)
    assert [r.body for r in recorder.results] == [b"first"]
    assert recorder.usable_then is False and transport.closing


@pytest.mark.parametrize("answer", [OK, CHUNKED, b"HTTP/1.1 204 No Content\r\n\r\n",
                                    b"HTTP/1.1 100 Continue\r\n\r\n" + OK, b"\r\n" + OK,
                                    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0;x=\"y\"\r\nt: v\r\n\r\n"])
async def test_every_split_of_a_clean_answer_is_reusable(answer: bytes) -> None:
    for cut in range(len(answer) + 1):
        for second in (cut, min(cut + 1, len(answer))):
            conn, _ = make()
            recorder = exchange(conn, answer[:cut], answer[cut:second], answer[second:])
            assert recorder.outcomes == 1 and recorder.results, (cut, second)
            assert recorder.usable_then, (answer, cut, second)


@pytest.mark.parametrize("answer", [OK, CHUNKED])
async def test_every_split_with_trailing_bytes_is_single_use(answer: bytes) -> None:
    stream = answer + b"\r\n"
    for cut in range(1, len(stream)):
        conn, _ = make()
        recorder = exchange(conn, stream[:cut], stream[cut:])
        assert recorder.outcomes == 1
        # Either the answer ended in the first piece and the blank line arrived while idle (closed), or both
        # arrived together: never a reusable connection.
        assert not conn.usable, cut


async def test_a_blank_line_before_the_status_line_does_not_shift_the_headers() -> None:
    conn, _ = make()
    recorder = exchange(conn, b"\r\n\r\n" + OK)
    response = recorder.results[0]
    assert response.headers == [(b"x-id", b"one")]
    assert response.body == b"first"


async def test_bytes_while_idle_close_the_connection() -> None:
    conn, transport = make()
    exchange(conn, OK)
    assert conn.usable
    conn.data_received(SECOND)
    assert not conn.usable and transport.closing


async def test_an_answer_that_begins_before_the_request_was_written_is_single_use() -> None:
    conn, transport = make()
    recorder = Recorder(conn)
    conn.start(b"POST / HTTP/1.1\r\nhost: up\r\ncontent-length: 9\r\n\r\n123456789", False,
               asyncio.get_running_loop().time() + 60, recorder)
    transport.buffered = 4  # part of the body still unsent when the answer arrives
    conn.data_received(OK)
    assert recorder.results[0].status == 200
    assert recorder.usable_then is False and transport.closing


async def test_101_is_a_502_and_closes() -> None:
    conn, transport = make()
    recorder = exchange(conn, b"HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\nconnection: upgrade\r\n\r\n" + OK)
    assert recorder.outcomes == 1
    error = recorder.errors[0]
    assert isinstance(error, BadGateway) and error.reason == "bad_upstream_response"
    assert transport.closing


@pytest.mark.parametrize("interim", [b"HTTP/1.1 102 Processing\r\n\r\n",
                                     b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n",
                                     b"HTTP/1.1 199 Whatever\r\n\r\n"])
async def test_other_interim_answers_are_skipped_and_the_connection_not_reused(interim: bytes) -> None:
    conn, transport = make()
    recorder = exchange(conn, interim + OK)
    assert [(r.status, r.body, r.headers) for r in recorder.results] == [(200, b"first", [(b"x-id", b"one")])]
    assert recorder.usable_then is False and transport.closing


async def test_100_continue_keeps_the_connection() -> None:
    conn, _ = make()
    recorder = exchange(conn, b"HTTP/1.1 100 Continue\r\n\r\n", OK)
    assert recorder.results[0].body == b"first" and conn.usable


@pytest.mark.parametrize("answer", [b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 5\r\n\r\nfirst",
                                    b"HTTP/1.0 200 OK\r\ncontent-length: 5\r\n\r\nfirst"])
async def test_connection_close_is_single_use(answer: bytes) -> None:
    conn, transport = make()
    recorder = exchange(conn, answer)
    assert recorder.results[0].body == b"first" and recorder.usable_then is False and transport.closing


async def test_an_answer_to_head_is_single_use() -> None:
    conn, transport = make()
    recorder = exchange(conn, b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n", head=True)
    assert recorder.results[0].status == 200 and recorder.usable_then is False and transport.closing


async def test_a_close_delimited_answer_ends_with_the_connection() -> None:
    conn, transport = make()
    recorder = exchange(conn, b"HTTP/1.1 200 OK\r\n\r\nuntil ", b"the end")
    assert recorder.outcomes == 0
    transport.peer_closed()
    assert [r.body for r in recorder.results] == [b"until the end"]
    assert not conn.usable


async def test_a_close_mid_answer_is_a_reset_once() -> None:
    conn, transport = make()
    recorder = exchange(conn, b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
    transport.peer_closed()
    assert recorder.outcomes == 1 and isinstance(recorder.errors[0], UpstreamReset)


async def test_a_malformed_answer_is_one_502() -> None:
    conn, transport = make()
    recorder = exchange(conn, b"HTTP/1.1 2OO OK\r\n\r\n", b"more")
    assert recorder.outcomes == 1 and isinstance(recorder.errors[0], ProxyError)
    assert recorder.errors[0].status == 502 and transport.closing


async def test_the_pool_never_keeps_a_connection_that_is_not_at_a_boundary() -> None:
    loop = asyncio.get_running_loop()
    pool = EndpointPool("127.0.0.1", 1, PoolLimits(), loop)
    clean, dirty = make(), make()
    for conn, _ in (clean, dirty):
        conn.pooled = True
        pool.opened += 1
    exchange(clean[0], OK)
    exchange(dirty[0], OK + SECOND)
    pool.release(dirty[0])
    pool.release(clean[0])
    assert (pool.idle, pool.opened) == (1, 1)
    assert pool.take_idle() is clean[0]
    # A connection mid-exchange (its answer not complete) is not reusable either, whatever its flags say.
    busy, _ = make()
    busy.pooled = True
    pool.opened += 1
    recorder = exchange(busy, b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfi")
    busy.waiter = None  # as if the caller had let go without abandoning it
    assert not busy.usable
    pool.release(busy)
    assert pool.idle == 0 and recorder.outcomes == 0
    pool.close()
