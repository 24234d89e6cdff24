"""An upload to an HTTP/1.1 upstream connection (http/client.py with http/upload.py's writer): the head, then
chunks as the body arrives, held while the transport is full; the connection reusable after a whole exchange,
single-use when the answer comes before the body's end."""

from __future__ import annotations

import asyncio

from meshbatch.http.client import UpstreamConnection
from meshbatch.http.serialize import encode_upload_head
from meshbatch.http.upload import Upload
from testbed.transport import FakeTransport, Recorder, connect


class Source:
    def __init__(self) -> None:
        self.credited = 0

    def credit(self, size: int) -> None:
        self.credited += size


def started(length: int = -1) -> tuple[UpstreamConnection, FakeTransport, Upload, Source, Recorder]:
    conn = UpstreamConnection(asyncio.get_running_loop(), 1 << 20)
    transport = connect(conn)
    source = Source()
    upload = Upload(source, length)
    recorder = Recorder(conn)
    head = encode_upload_head(b"POST", b"/up", [(b"host", b"svc")], length)
    conn.start(head, False, asyncio.get_running_loop().time() + 60, recorder, upload=upload)
    return conn, transport, upload, source, recorder


async def test_chunks_as_they_come_then_a_reusable_connection() -> None:
    conn, transport, upload, source, recorder = started()
    assert transport.data.endswith(b"transfer-encoding: chunked\r\n\r\n")
    upload.feed(b"hello", 5)
    conn.pause_writing()
    upload.feed(b"world", 5)
    assert transport.data.endswith(b"5\r\nhello\r\n") and source.credited == 5
    conn.resume_writing()
    upload.end(None)
    assert transport.data.endswith(b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n") and source.credited == 10
    conn.data_received(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
    assert recorder.results[0].body == b"ok" and recorder.usable_then and conn.writer is None


async def test_a_length_from_the_caller_frames_it_as_is() -> None:
    _, transport, upload, _, _ = started(length=3)
    upload.feed(b"abc", 3)
    upload.end(None)
    assert transport.data.endswith(b"content-length: 3\r\n\r\nabc")


async def test_an_answer_before_the_end_makes_the_connection_single_use() -> None:
    conn, transport, upload, source, recorder = started()
    upload.feed(b"part", 4)
    conn.data_received(b"HTTP/1.1 413 Too Large\r\ncontent-length: 0\r\n\r\n")
    assert recorder.results[0].status == 413 and not recorder.usable_then and conn.closed
    upload.feed(b"more", 4)  # credited and dropped
    assert source.credited == 8 and b"more" not in transport.data
