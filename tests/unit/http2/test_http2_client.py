"""The HTTP/2 client connection over an in-memory transport, against h2's own server side as the peer: streams
within the peer's limit, flow control both ways, answers with trailers, cancellation, deadlines, GOAWAY, and what
a hostile peer can send."""

from __future__ import annotations

import asyncio

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
from h2.errors import ErrorCodes
from hpack import Encoder
from hyperframe.frame import DataFrame, HeadersFrame

from meshbatch.errors import BadGateway, GatewayTimeout, ProxyError, StreamRefused, UpstreamReset
from meshbatch.http.message import Response
from meshbatch.http2.client import MultiplexedConnection, StreamLimits
from meshbatch.http2.client_stream import ClientStream
from testbed.h2_upstream_peer import Peer
from testbed.transport import FakeTransport, connect


def make(limits: StreamLimits | None = None, **settings: int) -> tuple[MultiplexedConnection, Peer, FakeTransport]:
    conn = MultiplexedConnection(asyncio.get_running_loop(), limits or StreamLimits())
    transport = connect(conn)
    peer = Peer(conn, transport, **settings)
    return conn, peer, transport


def later(seconds: float = 60) -> float:
    return asyncio.get_running_loop().time() + seconds


HOST = [(b"host", b"svc"), (b"x-a", b"1"), (b"connection", b"keep-alive"), (b"te", b"gzip")]


def result(stream: ClientStream) -> Response:
    assert stream.waiter.done()
    return stream.waiter.result()


def error(stream: ClientStream) -> ProxyError:
    assert stream.waiter.done()
    exc = stream.waiter.exception()
    assert isinstance(exc, ProxyError)
    return exc


async def test_a_request_and_its_answer_with_trailers() -> None:
    conn, peer, _ = make()
    assert conn.available
    stream = conn.request(b"POST", b"/orders?x=1", HOST, b"body", later())
    peer.read()
    headers = peer.requests()[1]
    assert headers[:4] == [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/orders?x=1"),
                           (b":authority", b"svc")]
    assert (b"x-a", b"1") in headers and (b"te", b"trailers") in headers
    assert not {b"connection", b"host"} & {name for name, _ in headers}
    assert peer.body(1) == b"body"
    peer.h2.send_headers(1, [(b":status", b"200"), (b"content-length", b"2"), (b"x-b", b"2")])
    peer.h2.send_data(1, b"ok")
    peer.h2.send_headers(1, [(b"grpc-status", b"0"), (b"host", b"dropped")], end_stream=True)
    peer.answer()
    response = result(stream)
    assert (response.status, response.headers, response.body) == (200, [(b"x-b", b"2")], b"ok")
    assert response.trailers == [(b"grpc-status", b"0")]
    assert not conn.streams and conn.available


async def test_no_stream_before_the_peers_settings() -> None:
    conn = MultiplexedConnection(asyncio.get_running_loop(), StreamLimits())
    connect(conn)
    assert not conn.available and not conn.ready.done()


async def test_the_peers_stream_limit_is_honoured_and_a_freed_slot_is_told() -> None:
    conn, peer, _ = make(max_concurrent_streams=1)
    freed: list[MultiplexedConnection] = []
    conn.on_free = freed.append
    stream = conn.request(b"GET", b"/", HOST, b"", later())
    assert not conn.available and conn.capacity == 1
    peer.read()
    peer.h2.send_headers(1, [(b":status", b"204")], end_stream=True)
    peer.answer()
    assert result(stream).status == 204
    assert freed == [conn] and conn.available


async def test_a_body_goes_out_as_the_peers_window_opens() -> None:
    conn, peer, _ = make(initial_window_size=10)
    stream = conn.request(b"POST", b"/", HOST, b"x" * 25, later())
    peer.read()
    assert peer.body(1) == b"x" * 10 and stream.pending == b"x" * 15
    peer.h2.increment_flow_control_window(100, stream_id=1)
    peer.h2.increment_flow_control_window(100)
    peer.answer()
    assert peer.body(1) == b"x" * 25 and stream.pending == b""


async def test_a_window_never_opened_ends_at_the_deadline() -> None:
    conn, peer, _ = make(initial_window_size=0)
    stream = conn.request(b"POST", b"/", HOST, b"body", later(-1))  # (a deadline already passed: due at once)
    for _ in range(3):  # (the loop's turns that run a due timer: no waiting)
        await asyncio.sleep(0)
    assert isinstance(error(stream), GatewayTimeout) and error(stream).reason == "upstream_timeout"
    peer.read()
    assert peer.resets() == [(1, ErrorCodes.CANCEL)] and conn.available


async def test_a_cancelled_caller_resets_only_its_stream() -> None:
    conn, peer, _ = make()
    first = conn.request(b"GET", b"/a", HOST, b"", later())
    second = conn.request(b"GET", b"/b", HOST, b"", later())
    conn.cancel(first)
    peer.read()
    assert peer.resets() == [(1, ErrorCodes.CANCEL)]
    peer.h2.send_headers(3, [(b":status", b"200")], end_stream=True)
    peer.answer()
    assert result(second).status == 200 and not first.waiter.done()


async def test_an_answer_over_the_size_limit_resets_its_stream_only() -> None:
    conn, peer, _ = make(StreamLimits(max_response_bytes=10))
    big = conn.request(b"GET", b"/big", HOST, b"", later())
    announced = conn.request(b"GET", b"/announced", HOST, b"", later())
    peer.read()
    peer.h2.send_headers(1, [(b":status", b"200")])
    peer.h2.send_data(1, b"y" * 11)
    peer.h2.send_headers(3, [(b":status", b"200"), (b"content-length", b"11")])
    peer.answer()
    assert error(big).reason == "upstream_response_too_large"
    assert error(announced).reason == "upstream_response_too_large"
    assert peer.resets() == [(1, ErrorCodes.CANCEL), (3, ErrorCodes.CANCEL)]
    assert conn.available and not conn.closed


@pytest.mark.parametrize("code", [ErrorCodes.INTERNAL_ERROR, ErrorCodes.REFUSED_STREAM])
async def test_a_stream_reset_by_the_peer(code: ErrorCodes) -> None:
    conn, peer, _ = make()
    stream = conn.request(b"POST", b"/", HOST, b"", later())
    peer.read()
    peer.h2.reset_stream(1, code)
    peer.answer()
    expected = StreamRefused if code == ErrorCodes.REFUSED_STREAM else UpstreamReset
    assert type(error(stream)) is expected and conn.available


async def test_goaway_refuses_the_streams_above_its_last_and_lets_the_others_finish() -> None:
    conn, peer, transport = make()
    served = conn.request(b"POST", b"/1", HOST, b"", later())
    refused = conn.request(b"POST", b"/2", HOST, b"", later())
    peer.read()
    peer.h2.close_connection(last_stream_id=1)
    peer.h2.send_headers(1, [(b":status", b"201")], end_stream=True)  # after the GOAWAY, in the same read
    peer.answer()
    assert isinstance(error(refused), StreamRefused) and error(refused).reason == "upstream_refused_stream"
    assert result(served).status == 201
    assert conn.goaway and not conn.available and transport.closing  # its last stream over: it closes


async def test_streamed_body_holds_its_window_while_the_consumer_is_paused() -> None:
    conn, peer, _ = make()
    stream = conn.request(b"GET", b"/", HOST, b"", later(), stream_limit=4)
    peer.read()
    peer.h2.send_headers(1, [(b":status", b"200")])
    peer.h2.send_data(1, b"abcdef")
    peer.answer()
    response = result(stream)
    body = response.stream
    assert body is not None
    body.pause()  # (no sink yet, and more than the limit waits: the source is held already)
    assert stream.paused
    peer.h2.send_data(1, b"g" * 1000)
    peer.answer()
    assert stream.unacked == 1000
    updates = [e for e in peer.events if isinstance(e, h2.events.WindowUpdated) and e.stream_id == 1]
    stream.resume_reading()
    peer.read()
    assert len([e for e in peer.events if isinstance(e, h2.events.WindowUpdated) and e.stream_id == 1]) >= \
        len(updates) and stream.unacked == 0


async def test_a_header_block_beyond_the_limit_fails_the_connection() -> None:
    conn, peer, transport = make(StreamLimits(max_header_list_size=4096))
    stream = conn.request(b"GET", b"/", HOST, b"", later())
    peer.read()
    bomb = Encoder().encode([(b":status", b"200"), *[(b"x-bomb", b"b" * 1000)] * 50])  # indexed once, referenced
    assert len(bomb) < 1200
    peer.answer(HeadersFrame(1, bomb, flags=["END_HEADERS", "END_STREAM"]).serialize())
    assert error(stream).reason == "upstream_headers_too_large"
    assert conn.closed and transport.closing


@pytest.mark.parametrize("fields", [
    [(b":status", b"200"), (b"X-Upper", b"1")],  # RFC 9113 8.2.1: no upper case in a name
    [(b":status", b"200"), (b"x y", b"1")],
    [(b":status", b"200"), (b"connection", b"close")],  # 8.2.2
    [(b":status", b"200"), (b"transfer-encoding", b"chunked")],
    [(b":status", b"200"), (b"x", b"a\r\nb")],
    [(b":status", b"200"), (b"x", b"a ")],
    [(b"x", b"1"), (b":status", b"200")],  # 8.3: pseudo-header fields first, once, only :status
    [(b":status", b"200"), (b":status", b"204")],
    [(b":status", b"200"), (b":path", b"/")],
    [(b"x", b"1")],
    [(b":status", b"20x")],
])
async def test_a_malformed_answer_fails_its_stream_only(fields: list[tuple[bytes, bytes]]) -> None:
    conn, peer, transport = make()
    encoder = Encoder()  # h2's own server would refuse to send these: the blocks are written by hand
    stream = conn.request(b"GET", b"/", HOST, b"", later())
    peer.read()
    conn.data_received(HeadersFrame(1, encoder.encode(fields), flags=["END_HEADERS", "END_STREAM"]).serialize())
    assert error(stream).reason == "bad_upstream_response" and not conn.closed and not conn.streams
    fine = conn.request(b"GET", b"/", HOST, b"", later())
    peer.read()
    conn.data_received(HeadersFrame(3, encoder.encode([(b":status", b"200")]),
                                    flags=["END_HEADERS", "END_STREAM"]).serialize())
    assert result(fine).status == 200 and not transport.closing


@pytest.mark.parametrize("trailers", [[(b":status", b"200")], [(b"Grpc-Status", b"0")], [(b"te", b"gzip")]])
async def test_malformed_trailers_fail_their_stream(trailers: list[tuple[bytes, bytes]]) -> None:
    conn, peer, _ = make()
    encoder = Encoder()
    stream = conn.request(b"POST", b"/", HOST, b"x", later())
    peer.read()
    conn.data_received(HeadersFrame(1, encoder.encode([(b":status", b"200")]), flags=["END_HEADERS"]).serialize()
                       + HeadersFrame(1, encoder.encode(trailers), flags=["END_HEADERS", "END_STREAM"]).serialize())
    assert error(stream).reason == "bad_upstream_response" and not conn.closed


async def test_the_request_block_is_well_formed_whatever_the_case_of_the_callers_fields() -> None:
    conn, peer, _ = make()  # (the peer is h2 with its checks on: a malformed block would fail it)
    conn.request(b"GET", b"/", [(b"Host", b"svc"), (b"X-Mixed", b"1"), (b"Authorization", b"secret"),
                                (b"Transfer-Encoding", b"chunked")], b"", later())
    peer.read()
    assert peer.requests()[1] == [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"),
                                  (b":authority", b"svc"), (b"x-mixed", b"1"), (b"authorization", b"secret"),
                                  (b"te", b"trailers")]


async def test_a_frame_on_a_stream_never_opened_fails_the_connection() -> None:
    conn, peer, transport = make()
    stream = conn.request(b"GET", b"/", HOST, b"", later())
    peer.read()
    conn.data_received(DataFrame(101, b"stray").serialize())
    assert isinstance(error(stream), BadGateway) and error(stream).reason == "bad_upstream_response"
    assert conn.closed and transport.closing


async def test_a_peer_that_makes_us_write_without_reading_is_cut_off() -> None:
    conn, peer, transport = make(StreamLimits(max_write_buffer=1000))
    stream = conn.request(b"GET", b"/", HOST, b"", later())
    transport.buffered = 5000  # (it reads nothing of what we write)
    peer.h2.ping(b"12345678")
    peer.answer()
    assert error(stream).reason == "upstream_flood" and conn.closed


async def test_a_closed_connection_fails_its_streams_as_reset() -> None:
    conn, _, transport = make()
    stream = conn.request(b"GET", b"/", HOST, b"", later())
    transport.peer_closed()
    assert isinstance(error(stream), UpstreamReset) and conn.closed and not conn.available


async def test_a_body_stops_while_the_transport_is_full_and_goes_on_when_it_drains() -> None:
    conn, peer, _ = make()
    conn.pause_writing()  # (the transport's buffer is above its high-water mark)
    stream = conn.request(b"POST", b"/", HOST, b"z" * 40_000, later())
    peer.read()
    assert peer.body(1) == b"" and len(stream.pending) == 40_000
    conn.resume_writing()
    peer.read()
    assert peer.body(1) == b"z" * 40_000 and stream.pending == b""


async def test_requests_opened_in_one_turn_of_the_loop_leave_in_one_write() -> None:
    conn, peer, transport = make()
    transport.written.clear()
    streams = [conn.request(b"POST", b"/", HOST, b"body", later()) for _ in range(3)]
    assert not transport.written  # the write waits for the end of the turn
    await asyncio.sleep(0)
    assert len(transport.written) == 1
    peer.read()
    assert sorted(peer.requests()) == [s.id for s in streams] and all(peer.body(s.id) == b"body" for s in streams)


async def test_an_answer_of_unknown_length_a_read_leaves_open_streams_from_there() -> None:
    # a gRPC server's stream, server-sent events: each piece reaches the caller as it comes, not at the end
    conn, peer, _ = make()
    stream = conn.request(b"POST", b"/test.Echo/Watch", HOST, b"", later(), stream_limit=1 << 20)
    peer.read()
    peer.h2.send_headers(1, [(b":status", b"200"), (b"content-type", b"application/grpc")])
    peer.h2.send_data(1, b"first")
    peer.answer()  # one read: the head and the first message, no end
    body = result(stream).stream
    assert body is not None and body.length == -1
    peer.h2.send_data(1, b"second")
    peer.h2.send_headers(1, [(b"grpc-status", b"0")], end_stream=True)
    peer.answer()
    assert body.trailers == [(b"grpc-status", b"0")] and not conn.streams


@pytest.mark.parametrize(("length", "limit"), [(None, 1 << 20), (b"11", 1 << 20), (None, 0)])
async def test_an_answer_that_ends_in_its_read_says_its_length_or_may_not_stream_is_read_whole(
        length: bytes | None, limit: int) -> None:
    conn, peer, _ = make()
    stream = conn.request(b"POST", b"/test.Echo/Unary", HOST, b"", later(), stream_limit=limit)
    peer.read()
    head = [(b":status", b"200"), *([(b"content-length", length)] if length else [])]
    peer.h2.send_headers(1, head)
    peer.h2.send_data(1, b"first")
    if length is not None or not limit:  # (a length said, or no limit: the answer waits for the rest)
        peer.answer()
        assert not stream.waiter.done()
    peer.h2.send_data(1, b"second", end_stream=True)
    peer.answer()
    response = result(stream)
    assert response.stream is None and response.body == b"firstsecond"
