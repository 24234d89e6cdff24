"""A request body forwarded as it arrives (http/upload.py): credit goes back only as the sink takes bytes, held
bytes are bounded by what was not credited, the end and a failure reach the sink once, a detached upload drops
and credits; the HTTP/1.1 writer chunks, holds while its transport is full, and stops when its connection goes."""

from __future__ import annotations

from meshbatch.errors import ProxyError
from meshbatch.http.upload import ChunkedWriter, Upload


class Source:
    def __init__(self) -> None:
        self.credited = 0

    def credit(self, size: int) -> None:
        self.credited += size


class Sink:
    def __init__(self, upload: Upload, takes: bool = True) -> None:
        self.upload = upload
        self.takes = takes
        self.data: list[bytes] = []
        self.ended: list[object] = []
        self.aborted: list[ProxyError] = []

    def upload_data(self, data: bytes) -> None:
        self.data.append(data)
        if self.takes:
            self.upload.taken(len(data))

    def upload_end(self, trailers: list[tuple[bytes, bytes]] | None) -> None:
        self.ended.append(trailers)

    def upload_abort(self, error: ProxyError) -> None:
        self.aborted.append(error)


class Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closing


def test_held_bytes_go_first_and_credit_follows_the_sink() -> None:
    source = Source()
    upload = Upload(source)
    upload.feed(b"ab", 2)
    upload.feed(b"cd", 4)  # 2 bytes of padding: credited at once
    assert source.credited == 2
    sink = Sink(upload, takes=False)
    upload.attach(sink)
    assert sink.data == [b"ab", b"cd"] and source.credited == 2  # not taken yet: no credit
    upload.taken(3)
    assert source.credited == 5
    upload.taken(100)  # never more than was received
    assert source.credited == 6
    upload.end([(b"x-t", b"1")])
    assert sink.ended == [[(b"x-t", b"1")]]
    upload.end(None)
    upload.fail(ProxyError("late"))
    assert len(sink.ended) == 1 and not sink.aborted


def test_bytes_credited_before_the_dispatch_are_not_credited_twice() -> None:
    source = Source()
    upload = Upload(source)
    upload.feed(b"early", 0)  # (credited by the stream before the upload existed)
    sink = Sink(upload)
    upload.attach(sink)
    upload.feed(b"late", 4)
    assert source.credited == 4


def test_end_and_failure_before_the_sink_reach_it_on_attach() -> None:
    upload = Upload(Source())
    upload.feed(b"x", 1)
    upload.end(None)
    sink = Sink(upload)
    upload.attach(sink)
    assert sink.data == [b"x"] and sink.ended == [None]
    failed = Upload(Source())
    failed.feed(b"x", 1)
    failed.fail(ProxyError("downstream_reset"))
    sink = Sink(failed)
    failed.attach(sink)
    assert sink.data == [] and [e.reason for e in sink.aborted] == ["downstream_reset"]


def test_a_detached_upload_credits_and_drops() -> None:
    source = Source()
    upload = Upload(source)
    sink = Sink(upload, takes=False)
    upload.attach(sink)
    upload.feed(b"12345", 5)
    upload.detach()
    assert source.credited == 5
    upload.feed(b"678", 3)
    assert source.credited == 8 and sink.data == [b"12345"] and upload.attached


def test_collecting_calls_back_once_whole() -> None:
    upload = Upload(Source())
    calls: list[str] = []
    upload.collect(lambda: calls.append("ready"))
    assert upload.collecting
    upload.collected()
    upload.collected()
    assert calls == ["ready"] and upload.done


def test_chunked_writer_chunks_holds_while_full_and_ends() -> None:
    source = Source()
    upload = Upload(source)
    transport = Transport()
    writer = ChunkedWriter(upload, transport, chunked=True)
    upload.attach(writer)
    upload.feed(b"hello", 5)
    assert transport.written == [b"5\r\nhello\r\n"] and source.credited == 5
    writer.pause()
    upload.feed(b"world", 5)
    upload.end(None)
    assert transport.written == [b"5\r\nhello\r\n"] and source.credited == 5  # held: the caller waits
    writer.resume()
    assert transport.written == [b"5\r\nhello\r\n", b"5\r\nworld\r\n", b"0\r\n\r\n"] and source.credited == 10
    assert not writer.sending


def test_length_framed_writer_and_a_connection_that_goes() -> None:
    source = Source()
    upload = Upload(source, length=10)
    transport = Transport()
    writer = ChunkedWriter(upload, transport, chunked=upload.length < 0)
    upload.attach(writer)
    upload.feed(b"abc", 3)
    transport.closing = True
    upload.feed(b"def", 3)  # the connection went: dropped and credited, the upload detached
    assert transport.written == [b"abc"] and source.credited == 6 and not writer.sending
    assert upload.sink is None
    upload.feed(b"ghij", 4)
    upload.end(None)
    assert source.credited == 10 and transport.written == [b"abc"]


def test_an_aborted_upload_stops_the_writer() -> None:
    upload = Upload(Source())
    transport = Transport()
    writer = ChunkedWriter(upload, transport, chunked=True)
    upload.attach(writer)
    upload.fail(ProxyError("downstream_reset"))
    assert not writer.sending and transport.written == []  # no last chunk: the upstream sees the body cut
