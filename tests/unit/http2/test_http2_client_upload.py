"""An upload to an HTTP/2 upstream (http2/client_stream.py as its sink), and a whole body with trailers: DATA as
the upstream's window allows, the caller credited only for what went, the end with its trailers, an answer
before the end cutting the upload (RST_STREAM NO_ERROR), a caller's abort resetting the upstream stream."""

from __future__ import annotations

import asyncio

import h2.events
from h2.errors import ErrorCodes

from meshbatch.errors import ProxyError
from meshbatch.http.upload import Upload
from meshbatch.http2.client import MultiplexedConnection, StreamLimits
from testbed.h2_upstream_peer import Peer
from testbed.transport import FakeTransport, connect

HOST = [(b"host", b"svc")]


class Source:
    def __init__(self) -> None:
        self.credited = 0

    def credit(self, size: int) -> None:
        self.credited += size


def make() -> tuple[MultiplexedConnection, Peer, FakeTransport]:
    conn = MultiplexedConnection(asyncio.get_running_loop(), StreamLimits())
    transport = connect(conn)
    return conn, Peer(conn, transport), transport


def later() -> float:
    return asyncio.get_running_loop().time() + 60


def ended(peer: Peer, sid: int) -> bool:
    return any(isinstance(e, h2.events.StreamEnded) and e.stream_id == sid for e in peer.events)


async def test_an_upload_goes_within_the_upstream_window_and_credits_what_went() -> None:
    conn, peer, _ = make()
    source = Source()
    upload = Upload(source)
    upload.feed(b"a" * 40_000, 40_000)
    stream = conn.request(b"POST", b"/up", HOST, b"", later(), upload=upload)
    peer.read()
    assert peer.body(1) == b"a" * 40_000 and source.credited == 40_000 and not ended(peer, 1)
    upload.feed(b"b" * 40_000, 40_000)  # beyond the upstream's 65,535-byte window: the rest waits
    peer.read()
    assert len(peer.body(1)) == 65_535 and source.credited == 65_535
    peer.h2.acknowledge_received_data(65_535, 1)
    peer.answer()
    assert len(peer.body(1)) == 80_000 and source.credited == 80_000
    upload.end([(b"x-sum", b"9"), (b"connection", b"dropped")])
    peer.read()
    trailers = [e for e in peer.events if isinstance(e, h2.events.TrailersReceived)]
    assert [list(t.headers) for t in trailers] == [[(b"x-sum", b"9")]] and ended(peer, 1)
    peer.h2.send_headers(1, [(b":status", b"200")], end_stream=True)
    peer.answer()
    assert stream.waiter.result().status == 200 and not conn.streams


async def test_an_answer_before_the_end_cuts_the_upload() -> None:
    conn, peer, _ = make()
    source = Source()
    upload = Upload(source)
    stream = conn.request(b"POST", b"/up", HOST, b"", later(), upload=upload)
    upload.feed(b"part", 4)
    peer.read()
    peer.h2.send_headers(1, [(b":status", b"413")], end_stream=True)
    peer.answer()
    assert stream.waiter.result().status == 413
    assert (1, ErrorCodes.NO_ERROR) in peer.resets()
    upload.feed(b"more", 4)  # the caller goes on sending: credited and dropped
    assert source.credited == 8 and upload.sink is None


async def test_an_aborted_upload_resets_the_upstream_stream() -> None:
    conn, peer, _ = make()
    upload = Upload(Source())
    conn.request(b"POST", b"/up", HOST, b"", later(), upload=upload)
    upload.feed(b"part", 4)
    upload.fail(ProxyError("downstream_reset"))
    peer.read()
    assert (1, ErrorCodes.CANCEL) in peer.resets() and not conn.streams


async def test_a_whole_body_with_trailers() -> None:
    conn, peer, _ = make()
    conn.request(b"POST", b"/t", HOST, b"body", later(), trailers=[(b"grpc-status-details-bin", b"x")])
    peer.read()
    trailers = [e for e in peer.events if isinstance(e, h2.events.TrailersReceived)]
    assert peer.body(1) == b"body" and [list(t.headers) for t in trailers] == [[(b"grpc-status-details-bin", b"x")]]
    conn.request(b"POST", b"/t", HOST, b"", later(), trailers=[(b"x-only", b"trailers")])
    peer.read()
    assert ended(peer, 3) and peer.body(3) == b""
