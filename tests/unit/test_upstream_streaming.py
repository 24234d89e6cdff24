"""`UpstreamConnection` with a stream limit, without sockets: when an answer is read whole and when its body
streams, back-pressure from the consumer, failures mid-body, and the reuse decision at the end."""

from __future__ import annotations

import asyncio

import pytest

from meshbatch.errors import ProxyError
from meshbatch.http.client import UpstreamConnection
from testbed.transport import FakeTransport, Recorder, connect

LIMIT = 16


class Sink:
    def __init__(self, conn: UpstreamConnection) -> None:
        self.conn = conn
        self.data = b""
        self.ended = False
        self.error: ProxyError | None = None
        self.usable_at_end: bool | None = None

    def stream_data(self, data: bytes) -> None:
        self.data += data

    def stream_end(self) -> None:
        self.ended = True

    def stream_abort(self, error: ProxyError) -> None:
        self.error = error


def start(max_response_bytes: int = 1 << 20, deadline: float = 60.0) -> tuple[UpstreamConnection, FakeTransport,
                                                                              Recorder]:
    loop = asyncio.get_running_loop()
    conn = UpstreamConnection(loop, max_response_bytes)
    transport = connect(conn)
    recorder = Recorder(conn)
    conn.start(b"GET / HTTP/1.1\r\nhost: up\r\n\r\n", False, loop.time() + deadline, recorder, LIMIT)
    return conn, transport, recorder


def attach(conn: UpstreamConnection, recorder: Recorder, released: list[bool]) -> Sink:
    response = recorder.results[0]
    assert response.stream is not None and response.body == b""
    sink = Sink(conn)
    response.stream.when_closed(lambda: released.append(conn.usable))
    response.stream.attach(sink)
    return sink


@pytest.mark.parametrize("reads", [
    [b"HTTP/1.1 200 OK\r\ncontent-length: 16\r\n\r\n", b"a" * 8, b"a" * 8],  # its length said: waited for
    [b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n10\r\n" + b"a" * 16 + b"\r\n0\r\n\r\n"],  # one read
])
async def test_an_answer_within_the_limit_is_read_whole(reads: list[bytes]) -> None:
    conn, _, recorder = start()
    for data in reads:
        conn.data_received(data)
    response = recorder.results[0]
    assert (response.stream, response.body) == (None, b"a" * 16) and conn.usable


async def test_a_known_length_over_the_limit_streams_from_the_head() -> None:
    conn, _, recorder = start()
    conn.data_received(b"HTTP/1.1 200 OK\r\ncontent-length: 40\r\nx-a: 1\r\n\r\n" + b"a" * 10)
    response = recorder.results[0]
    assert response.stream is not None and response.stream.length == 40
    assert response.headers == [(b"x-a", b"1")]  # framing headers stay the client's business
    released: list[bool] = []
    sink = attach(conn, recorder, released)
    conn.data_received(b"b" * 20)
    assert not conn.usable  # mid-body
    conn.data_received(b"c" * 10)
    assert (sink.data, sink.ended, sink.error) == (b"a" * 10 + b"b" * 20 + b"c" * 10, True, None)
    assert released == [True] and conn.usable  # a clean end: back in the pool, reusable


async def test_an_unknown_length_streams_once_a_read_leaves_it_unfinished() -> None:
    # (server-sent events, a long poll: however small, each piece goes on as it comes)
    conn, _, recorder = start()
    conn.data_received(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
    assert recorder.outcomes == 0  # a head alone waits for some body
    conn.data_received(b"8\r\n12345678\r\n")
    response = recorder.results[0]
    assert response.stream is not None and response.stream.length == -1
    released: list[bool] = []
    sink = attach(conn, recorder, released)
    assert sink.data == b"12345678"
    conn.data_received(b"10\r\n" + b"x" * 16 + b"\r\n")
    assert sink.data == b"12345678" + b"x" * 16 and not sink.ended
    conn.data_received(b"0\r\n\r\n")
    assert (sink.ended, released) == (True, [True])


async def test_the_consumer_pausing_stops_reading_the_upstream() -> None:
    conn, transport, recorder = start()
    conn.data_received(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n")
    stream = recorder.results[0].stream
    assert stream is not None
    sink = attach(conn, recorder, [])
    stream.pause()
    assert not transport.reading
    conn.data_received(b"x" * 50)  # already in flight: delivered all the same
    stream.resume()
    assert transport.reading and sink.data == b"x" * 50


async def test_nobody_taking_the_body_stops_reading_at_the_limit() -> None:
    conn, transport, recorder = start()
    conn.data_received(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n" + b"x" * 10)
    conn.data_received(b"y" * 10)
    assert not transport.reading  # 20 bytes wait for a consumer that has not attached
    sink = attach(conn, recorder, [])
    assert transport.reading and sink.data == b"x" * 10 + b"y" * 10


async def test_bytes_after_a_streamed_answer_make_it_single_use() -> None:
    conn, transport, recorder = start()
    conn.data_received(b"HTTP/1.1 200 OK\r\ncontent-length: 20\r\n\r\n")
    released: list[bool] = []
    sink = attach(conn, recorder, released)
    conn.data_received(b"z" * 20 + b"HTTP/1.1 401 No\r\ncontent-length: 0\r\n\r\n")
    assert sink.data == b"z" * 20 and sink.ended and released == [False] and transport.closing


@pytest.mark.parametrize("framing", [b"content-length: 100\r\n", b"transfer-encoding: chunked\r\n"])
async def test_a_close_mid_body_aborts_the_consumer(framing: bytes) -> None:
    conn, transport, recorder = start()
    body = b"x" * 30 if b"length" in framing else b"1e\r\n" + b"x" * 30 + b"\r\n"
    conn.data_received(b"HTTP/1.1 200 OK\r\n" + framing + b"\r\n" + body)
    released: list[bool] = []
    sink = attach(conn, recorder, released)
    transport.peer_closed()
    assert sink.error is not None and sink.error.reason == "upstream_reset" and not sink.ended
    assert released == [False]


async def test_a_close_delimited_body_ends_with_the_connection() -> None:
    conn, transport, recorder = start()
    conn.data_received(b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 30)
    released: list[bool] = []
    sink = attach(conn, recorder, released)
    conn.data_received(b"y" * 5)
    transport.peer_closed()
    assert (sink.data, sink.ended, sink.error, released) == (b"x" * 30 + b"y" * 5, True, None, [False])


async def test_the_deadline_bounds_the_body_too() -> None:
    conn, transport, recorder = start(deadline=-1.0)  # already past: its timer is due on the next loop turns
    conn.data_received(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n" + b"x" * 30)
    sink = attach(conn, recorder, [])
    for _ in range(3):  # (a due timer runs after the callbacks already queued)
        await asyncio.sleep(0)
    assert sink.error is not None and sink.error.reason == "upstream_timeout" and transport.closing


async def test_an_answer_larger_than_the_cap_fails_before_or_during_the_body() -> None:
    conn, _, recorder = start(max_response_bytes=64)
    conn.data_received(b"HTTP/1.1 200 OK\r\ncontent-length: 65\r\n\r\n")
    assert recorder.errors and getattr(recorder.errors[0], "reason", "") == "upstream_response_too_large"
    conn, _, recorder = start(max_response_bytes=64)
    conn.data_received(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n20\r\n" + b"x" * 32 + b"\r\n")
    sink = attach(conn, recorder, [])
    conn.data_received(b"21\r\n" + b"y" * 33 + b"\r\n")
    assert sink.error is not None and sink.error.reason == "upstream_response_too_large"


async def test_a_consumer_that_leaves_drops_the_connection() -> None:
    conn, transport, recorder = start()
    conn.data_received(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n" + b"x" * 30)
    released: list[bool] = []
    attach(conn, recorder, released)
    stream = recorder.results[0].stream
    assert stream is not None
    stream.abandon()
    assert released == [False] and transport.closing
    conn.data_received(b"y" * 70)  # whatever still arrives goes nowhere
