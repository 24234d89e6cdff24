"""Fuzzing the HTTP/2 server connection's frame path (hypothesis): generated and mutated frame sequences, split
anywhere across reads, into the server protocol over an in-memory transport.

Properties: nothing raises out of `data_received`; what the server writes is whole, well-formed frames; and
nothing hangs: every stream whose request was dispatched has been answered, unless the connection is closing."""

from __future__ import annotations

import asyncio
import struct

from hpack import Encoder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshbatch.http.message import Request, Response
from meshbatch.http.serving import Answer, Pending
from meshbatch.http.upload import Upload
from testbed.h2peer import PREFACE, H2Pair, frame, parse_frames

FUZZ = settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
LOOP = asyncio.new_event_loop()
SETTINGS_ACK = frame(0x4, 0x1, 0)


def head(method: bytes = b"GET", path: bytes = b"/x", extra: tuple[tuple[bytes, bytes], ...] = ()) -> bytes:
    fields = [(b":method", method), (b":path", path), (b":scheme", b"http"), (b":authority", b"t"), *extra]
    return bytes(Encoder().encode(fields))


def payload(kind: int) -> st.SearchStrategy[bytes]:
    structured = {
        0x0: st.binary(max_size=64),
        0x1: st.sampled_from([head(), head(b"POST"), head(b"GET", b"/a/../b"), head(b"PUT", b"*"),
                              head(b"GET", b"/x", ((b"content-length", b"3"),)), head(b"CONNECT"), b""]),
        0x3: st.integers(0, 15).map(lambda code: struct.pack(">I", code)),
        0x4: st.lists(st.tuples(st.integers(0, 9), st.integers(0, 2**32 - 1)), max_size=4).map(
            lambda items: b"".join(struct.pack(">HI", k, v) for k, v in items)),
        0x6: st.binary(min_size=8, max_size=8),
        0x7: st.tuples(st.integers(0, 11), st.integers(0, 15)).map(lambda t: struct.pack(">II", *t)),
        0x8: st.integers(0, 2**31).map(lambda n: struct.pack(">I", n)),
    }
    return st.one_of(structured.get(kind, st.binary(max_size=32)), st.binary(max_size=32))


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from([0x0, 0x0, 0x1, 0x1, 0x2, 0x3, 0x4, 0x6, 0x7, 0x8, 0x9, 0xA, 0x10]))
    flags = draw(st.sampled_from([0x0, 0x1, 0x4, 0x5, 0x8, 0x20, 0xFF]))
    stream = draw(st.sampled_from([0, 1, 1, 3, 3, 5, 7, 2, 2**31 - 1]))
    return frame(kind, flags, stream, draw(payload(kind)))


def conversation() -> bytes:
    """A valid exchange: two requests, one with a body, then a ping."""
    return (PREFACE + frame(0x4, 0, 0) + SETTINGS_ACK + frame(0x1, 0x5, 1, head())
            + frame(0x1, 0x4, 3, head(b"POST")) + frame(0x0, 0x0, 3, b"abc") + frame(0x0, 0x1, 3, b"def")
            + frame(0x6, 0, 0, b"12345678"))


def echo(request: Request, answer: Answer) -> Pending | None:
    if request.path.endswith(b"/hold"):
        return None
    answer(Response(200, [(b"x-a", b"1")], request.body or b"ok"))
    return None


class Relay:
    """A dispatch that forwards a body still arriving (its upload) and answers with it at its end."""

    def __call__(self, request: Request, answer: Answer) -> Pending | None:
        upload = request.upload
        if upload is None:
            return echo(request, answer)
        sink = _Sink(upload, answer)
        upload.attach(sink)
        return None


class _Sink:
    def __init__(self, upload: Upload, answer: Answer) -> None:
        self.upload, self.answer, self.data = upload, answer, b""

    def upload_data(self, data: bytes) -> None:
        self.data += data
        self.upload.taken(len(data))

    def upload_end(self, trailers: object) -> None:
        self.answer(Response(200, [], self.data or b"empty"))

    def upload_abort(self, error: object) -> None:
        pass


async def serve(chunks: list[bytes], uploads: bool = False) -> None:
    peer = H2Pair(Relay() if uploads else echo, uploads=uploads)
    dispatched: list[int] = []
    server = peer.server
    original = server._dispatch

    def spy(stream: object, request: Request) -> None:
        dispatched.append(getattr(stream, "id", 0))
        original(stream, request)  # type: ignore[arg-type]

    server._dispatch = spy  # type: ignore[method-assign]
    for chunk in chunks:
        server.data_received(chunk)  # must never raise
    for _ in range(3):
        await asyncio.sleep(0)
    parse_frames(peer.transport.data)  # well-formed output (raises on a broken frame)
    if not peer.transport.closing:
        unanswered = [sid for sid in dispatched if sid in server.streams and not server.streams[sid].responded
                      and (server.streams[sid].ended or not uploads)]  # (an upload still arriving waits)
        assert not unanswered, f"streams dispatched and never answered: {unanswered}"
    peer.transport.peer_closed()


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@FUZZ
@given(st.lists(frames(), max_size=12), st.lists(st.integers(0, 4096), max_size=6), st.booleans())
def test_generated_frame_sequences(sequence: list[bytes], cuts: list[int], settled: bool) -> None:
    start = PREFACE + frame(0x4, 0, 0) + (SETTINGS_ACK if settled else b"")
    LOOP.run_until_complete(serve(split(start + b"".join(sequence), cuts)))


@FUZZ
@given(st.lists(frames(), max_size=12), st.lists(st.integers(0, 4096), max_size=6))
def test_generated_frame_sequences_with_uploads(sequence: list[bytes], cuts: list[int]) -> None:
    start = PREFACE + frame(0x4, 0, 0) + SETTINGS_ACK
    LOOP.run_until_complete(serve(split(start + b"".join(sequence), cuts), uploads=True))


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=8),
       st.lists(st.integers(0, 4096), max_size=6))
def test_mutated_conversations_with_uploads(flips: list[tuple[int, int]], cuts: list[int]) -> None:
    data = bytearray(conversation())
    for at, value in flips:
        data[at % len(data)] = value
    LOOP.run_until_complete(serve(split(bytes(data), cuts), uploads=True))


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=8),
       st.lists(st.integers(0, 4096), max_size=6))
def test_mutated_conversations(flips: list[tuple[int, int]], cuts: list[int]) -> None:
    data = bytearray(conversation())
    for at, value in flips:
        data[at % len(data)] = value
    LOOP.run_until_complete(serve(split(bytes(data), cuts)))


@FUZZ
@given(st.binary(max_size=512), st.lists(st.integers(0, 1024), max_size=4))
def test_raw_bytes_after_the_preface(data: bytes, cuts: list[int]) -> None:
    LOOP.run_until_complete(serve(split(PREFACE + data, cuts)))


def test_the_valid_conversation_is_answered() -> None:
    async def run() -> None:
        peer = H2Pair(echo)
        peer.raw(conversation())
        frames_out = parse_frames(peer.transport.data)
        ends = [f.stream_id for f in frames_out if "END_STREAM" in f.flags]
        assert sorted(ends) == [1, 3]

    LOOP.run_until_complete(run())
