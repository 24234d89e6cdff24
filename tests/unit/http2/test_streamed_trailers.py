"""A streamed answer keeps its trailers, without sockets: read from an HTTP/2 upstream and from a chunked HTTP/1.1
one into the `BodyStream`'s end, and sent by the HTTP/2 server after the body (a gRPC caller's always with a
readable grpc-status)."""

from __future__ import annotations

import asyncio

from h2.events import TrailersReceived

from meshbatch.http.client import UpstreamConnection
from meshbatch.http.message import Response
from meshbatch.http.stream import BodyStream
from meshbatch.http2.client import MultiplexedConnection, StreamLimits
from testbed.h2_upstream_peer import Peer
from testbed.h2peer import H2Pair, request_headers
from testbed.transport import Recorder, connect

GRPC = [("content-type", "application/grpc"), ("te", "trailers")]


class Source:
    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def abandon(self) -> None:
        pass


class Ends:
    def stream_data(self, data: bytes) -> None:
        pass

    def stream_end(self) -> None:
        pass

    def stream_abort(self, error: object) -> None:
        pass


async def test_an_http2_upstreams_streamed_answer_ends_with_its_trailers() -> None:
    loop = asyncio.get_running_loop()
    conn = MultiplexedConnection(loop, StreamLimits())
    peer = Peer(conn, connect(conn))
    stream = conn.request(b"POST", b"/svc/M", [(b"host", b"svc")], b"", loop.time() + 60, stream_limit=4)
    peer.read()
    peer.h2.send_headers(1, [(b":status", b"200"), (b"content-type", b"application/grpc")])
    peer.h2.send_data(1, b"x" * 100)
    peer.answer()
    body = stream.waiter.result().stream
    assert body is not None and body.trailers is None
    body.attach(Ends())
    peer.h2.send_headers(1, [(b"grpc-status", b"0"), (b"x-t", b"1")], end_stream=True)
    peer.answer()
    assert body.done and body.trailers == [(b"grpc-status", b"0"), (b"x-t", b"1")]


async def test_a_chunked_http1_answer_streamed_ends_with_its_trailers() -> None:
    loop = asyncio.get_running_loop()
    conn = UpstreamConnection(loop, 1 << 20)
    connect(conn)
    recorder = Recorder(conn)
    conn.start(b"GET / HTTP/1.1\r\nhost: up\r\n\r\n", False, loop.time() + 60, recorder, 16)
    conn.data_received(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-sum\r\n\r\n")
    conn.data_received(b"20\r\n" + b"a" * 32 + b"\r\n")
    body = recorder.results[0].stream
    assert body is not None
    body.attach(Ends())
    conn.data_received(b"0\r\nx-sum: 42\r\n\r\n")
    assert body.done and body.trailers == [(b"x-sum", b"42")] and conn.usable


async def _streamed(trailers: list[tuple[bytes, bytes]] | None, extra: list[tuple[str, str]]) -> dict[bytes, bytes]:
    source = BodyStream(Source(), -1, 1 << 20)
    response = Response(200, [(b"content-type", b"application/grpc")])
    response.stream = source
    peer = H2Pair(lambda request, answer: answer(response))
    peer.flush()
    sid = peer.client.get_next_available_stream_id()
    peer.client.send_headers(sid, request_headers("/svc/M", "POST", extra=extra), end_stream=True)
    peer.flush()
    source.feed(b"body")
    source.end(trailers)
    peer.pull()
    assert peer.answers.body[sid] == b"body" and sid in peer.answers.ended
    found = [e for e in peer.answers.events if isinstance(e, TrailersReceived)]
    return dict(found[0].headers) if found else {}


async def test_the_server_sends_a_streamed_answers_trailers_after_its_body() -> None:
    sent = await _streamed([(b"x-sum", b"42"), (b"connection", b"close")], [])
    assert sent == {b"x-sum": b"42"}  # end-to-end fields only
    assert await _streamed(None, []) == {}  # none came: none sent


async def test_a_grpc_callers_streamed_answer_always_ends_with_a_readable_status() -> None:
    assert (await _streamed([(b"grpc-status", b"5"), (b"x-t", b"1")], GRPC)) == {b"grpc-status": b"5", b"x-t": b"1"}
    assert (await _streamed([(b"grpc-status", b"banana")], GRPC))[b"grpc-status"] == b"2"  # UNKNOWN
    missing = await _streamed(None, GRPC)
    assert missing[b"grpc-status"] == b"13" and b"without grpc-status" in missing[b"grpc-message"]
