"""Fuzzing the upstream response reader and its reuse decision (hypothesis). A seed corpus
(tests/fuzz/corpus/response) runs first, then generated inputs: raw bytes, mutations of the seeds, and answers
built from their framing-relevant parts with trailing bytes, cut at random points.

Properties: reading never raises; each exchange resolves exactly once (after the peer closes at the latest);
how the bytes are split never changes the outcome nor whether the connection stays reusable; a connection
that is reusable when the outcome goes out ends exactly at the end of one complete keep-alive answer (checked
against h11, an independent parser); and a reused connection hands the next exchange its own answer, never a
byte of an earlier one. The same holds when bodies stream (a small stream limit): a streamed answer that
ends cleanly carries the body a whole read gives, and one whose whole read fails never ends cleanly (however
it is cut, though where the failure shows may move: a status before the head went out, an abort after)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import h11
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshbatch.errors import ProxyError
from meshbatch.http.client import UpstreamConnection
from testbed.transport import Recorder, connect

CORPUS = sorted((Path(__file__).parent / "corpus" / "response").glob("*.bin"))
SEEDS = [path.read_bytes() for path in CORPUS]
FUZZ = settings(max_examples=250, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
REQUEST = b"GET / HTTP/1.1\r\nhost: up\r\n\r\n"
NEXT = b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nsecond"
STREAM_LIMIT = 8  # small enough that most generated bodies stream

Outcome = tuple[str, int, bytes, bool]


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


# h11 is stricter than llhttp about the characters of a status line and of header fields (a NUL in a reason
# phrase, say). Those are not framing: on them the oracle has no verdict.
HEAD_SYNTAX = ("illegal status line", "illegal header line", "Illegal header name", "Illegal header value")
NO_VERDICT = "no verdict"


def oracle(data: bytes) -> tuple[int, bytes] | str | None:
    """(status, body) if `data` is exactly one complete keep-alive answer (after 100 Continue answers), else None.

    llhttp skips blank lines before a status line; h11 refuses them: they are dropped before h11 reads."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("host", "up")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(data.lstrip(b"\r\n"))
    status, body = 0, b""
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return None
            if isinstance(event, h11.InformationalResponse):
                if event.status_code != 100:
                    return None
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
    except h11.RemoteProtocolError as exc:
        return NO_VERDICT if str(exc).startswith(HEAD_SYNTAX) else None
    if conn.trailing_data[0] or conn.their_state is not h11.DONE:
        return None
    return status, body


class Collect:
    """A stream's sink."""

    def __init__(self) -> None:
        self.data = b""
        self.ended = False
        self.error: ProxyError | None = None

    def stream_data(self, data: bytes) -> None:
        self.data += data

    def stream_end(self) -> None:
        self.ended = True

    def stream_abort(self, error: ProxyError) -> None:
        self.error = error


def run(loop: asyncio.AbstractEventLoop, chunks: list[bytes], stream_limit: int = 0) -> Outcome:
    """Feed one exchange's answer in `chunks`, check the invariants; the outcome and whether the connection
    was still reusable once every byte was read."""

    async def go() -> Outcome:
        conn = UpstreamConnection(loop, 4096)
        transport = connect(conn)
        recorder = Recorder(conn)
        conn.start(REQUEST, False, loop.time() + 60, recorder, stream_limit)
        received = b""
        sink: Collect | None = None
        released: list[bool] = []  # a streamed answer's connection, handed back: reusable or not
        for chunk in chunks:
            had = recorder.outcomes
            was_released = bool(released)
            received += chunk
            conn.data_received(chunk)  # never raises
            assert recorder.outcomes <= 1
            stream = recorder.results[0].stream if recorder.results else None
            if stream is not None and sink is None:
                sink = Collect()
                stream.when_closed(lambda: released.append(conn.usable))
                stream.attach(sink)
            whole_reusable = recorder.outcomes and not had and recorder.usable_then
            streamed_reusable = sink is not None and released[:1] == [True] and not was_released
            if whole_reusable or streamed_reusable:
                # Handed back as reusable: what arrived so far is one complete answer and nothing more.
                response = recorder.results[0]
                verdict = oracle(received)
                body = sink.data if sink is not None else response.body
                assert verdict in (NO_VERDICT, (response.status, body)), received
        usable = conn.usable
        if usable:  # a reused connection hands the next exchange its own answer
            second = Recorder(conn)
            conn.start(REQUEST, False, loop.time() + 60, second)
            conn.data_received(NEXT)
            assert [(r.status, r.body) for r in second.results] == [(200, b"second")]
        transport.peer_closed()
        assert recorder.outcomes == 1  # exactly once, at the latest when the connection closes
        if recorder.results:
            response = recorder.results[0]
            if sink is None:
                return "ok", response.status, response.body, usable
            assert sink.ended != (sink.error is not None)  # a stream ends exactly one way
            assert len(released) >= 1  # and its connection was handed back
            if sink.error is not None:
                return "aborted", response.status, sink.error.reason.encode(), usable
            return "ok", response.status, sink.data, usable
        error = recorder.errors[0]
        return type(error).__name__, getattr(error, "status", 0), str(error).encode(), usable

    return loop.run_until_complete(go())


def check(loop: asyncio.AbstractEventLoop, data: bytes, cuts: list[bytes]) -> Outcome:
    """Both ways of reading (whole, streamed) on `data` whole and cut into `cuts`: the whole read's outcome."""
    whole = run(loop, [data])
    assert run(loop, cuts) == whole
    streamed = run(loop, [data], STREAM_LIMIT)
    for pieces in (cuts, [data[i:i + 1] for i in range(len(data))]):  # (byte by byte: streams the most)
        cut = run(loop, pieces, STREAM_LIMIT)
        # An answer of unknown length streams once a read leaves it unfinished, so a failure may be found before
        # its head went out (a status) or after (the stream aborts): a failure either way, never a clean end.
        assert cut == streamed if streamed[0] == "ok" else cut[0] != "ok"
    if whole[0] == "ok":
        assert streamed == whole
    else:
        assert streamed[0] != "ok"
    return whole


@pytest.mark.parametrize("path", CORPUS, ids=[p.name for p in CORPUS])
def test_seed_corpus(loop: asyncio.AbstractEventLoop, path: Path) -> None:
    data = path.read_bytes()
    check(loop, data, [data[i:i + 1] for i in range(len(data))])


def test_seed_corpus_reuse_decisions(loop: asyncio.AbstractEventLoop) -> None:
    reusable = {path.name for path in CORPUS if run(loop, [path.read_bytes()])[3]}
    assert reusable == {"length.bin", "chunked.bin", "chunked_trailers.bin", "no_content.bin",
                        "not_modified_with_length.bin", "continue.bin", "leading_blank.bin",
                        "named_connection.bin"}


@FUZZ
@given(st.binary(max_size=400), st.lists(st.integers(min_value=0, max_value=500), max_size=6))
def test_any_bytes(loop: asyncio.AbstractEventLoop, data: bytes, cuts: list[int]) -> None:
    check(loop, data, split(data, cuts))


@FUZZ
@given(st.sampled_from(SEEDS), st.lists(st.tuples(st.integers(0, 300), st.binary(min_size=0, max_size=4)),
                                        min_size=1, max_size=4), st.lists(st.integers(0, 300), max_size=4))
def test_mutated_seeds(loop: asyncio.AbstractEventLoop, seed: bytes, edits: list[tuple[int, bytes]],
                       cuts: list[int]) -> None:
    data = bytearray(seed)
    for at, replacement in edits:
        at %= len(data) + 1
        data[at:at + len(replacement)] = replacement
    check(loop, bytes(data), split(bytes(data), cuts))


INTERIM = st.sampled_from([b"", b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 103 Early Hints\r\nlink: <x>\r\n\r\n"])
TRAILING = st.one_of(st.just(b""), st.binary(max_size=6),
                     st.sampled_from([b"\r\n", b"\n", b"\r", b"HTTP/1.1 200 OK\r\n",
                                      b"HTTP/1.1 401 No\r\nset-cookie: s\r\ncontent-length: 0\r\n\r\n"]))


@FUZZ
@given(INTERIM, st.sampled_from([200, 201, 204, 304, 404, 503]), st.sampled_from(["length", "chunked", "close"]),
       st.binary(max_size=64), st.lists(st.integers(1, 20), max_size=4), st.booleans(), TRAILING,
       st.lists(st.integers(0, 300), max_size=5))
def test_built_answers(loop: asyncio.AbstractEventLoop, interim: bytes, status: int, framing: str, body: bytes,
                       sizes: list[int], close: bool, trailing: bytes, cuts: list[int]) -> None:
    bodyless = status in (204, 304)
    head = b"HTTP/1.1 %d X\r\n" % status + (b"connection: close\r\n" if close else b"")
    if framing == "length":
        message = head + b"content-length: %d\r\n\r\n" % len(body) + (b"" if bodyless else body)
    elif framing == "chunked":
        chunks, rest = [], body
        for size in sizes:
            piece, rest = rest[:size], rest[size:]
            if piece:
                chunks.append(b"%x\r\n%s\r\n" % (len(piece), piece))
        if rest:
            chunks.append(b"%x\r\n%s\r\n" % (len(rest), rest))
        message = head + b"transfer-encoding: chunked\r\n\r\n" + (b"" if bodyless else b"".join(chunks) + b"0\r\n\r\n")
    else:
        message = head + b"\r\n" + (b"" if bodyless else body)
    data = interim + message + trailing
    kind, got_status, got_body, usable = check(loop, data, split(data, cuts))
    ends_with_close = framing == "close" and not bodyless
    if ends_with_close:
        assert not usable  # an answer that ends with the connection never leaves it reusable
        return
    assert (kind, got_status, got_body) == ("ok", status, b"" if bodyless else body)
    # Reusable exactly when nothing follows the answer and nothing else forbids it.
    assert usable == (not trailing and not close and b"103" not in interim)
