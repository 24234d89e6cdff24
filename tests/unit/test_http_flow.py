"""The flow-control decisions without sockets: the send watch on a fake clock, the pipelining bounds, and
`BodyStream` between a fake source and a fake sink."""

from __future__ import annotations

import pytest

from meshbatch.clock import FakeClock
from meshbatch.errors import ProxyError, UpstreamReset
from meshbatch.http.flow import SendWatch, may_resume, must_pause, queued_bytes
from meshbatch.http.message import Request
from meshbatch.http.stream import BodyStream

TIMEOUT = 30.0


def test_output_that_keeps_moving_is_never_aborted() -> None:
    clock, watch = FakeClock(), SendWatch()
    written, buffered = 1_000_000, 900_000
    at = watch.begin(written, buffered, clock.now(), TIMEOUT)
    for _ in range(40):  # a slow client: a few bytes every look, for far longer than the timeout
        clock.advance(at - clock.now())
        buffered -= 10
        at = watch.check(written, buffered, clock.now(), TIMEOUT)
        assert at > clock.now()


def test_output_that_stalls_is_aborted_after_the_timeout_and_not_before() -> None:
    clock, watch = FakeClock(), SendWatch()
    at = watch.begin(100, 100, clock.now(), TIMEOUT)
    stalled_at = clock.now()
    while True:
        clock.advance(at - clock.now())
        at = watch.check(100, 100, clock.now(), TIMEOUT)
        if at < 0:
            break
        assert clock.now() - stalled_at < TIMEOUT
    assert TIMEOUT <= clock.now() - stalled_at <= TIMEOUT * 1.25


def test_new_writes_are_not_mistaken_for_progress() -> None:
    clock, watch = FakeClock(), SendWatch()
    watch.begin(100, 100, clock.now(), TIMEOUT)
    clock.advance(TIMEOUT / 2)
    assert watch.check(300, 300, clock.now(), TIMEOUT) > 0  # 200 more written, none taken: still stalled
    clock.advance(TIMEOUT / 2)
    assert watch.check(300, 300, clock.now(), TIMEOUT) == -1.0


def test_drained_output_stops_the_watch() -> None:
    clock, watch = FakeClock(), SendWatch()
    watch.begin(100, 50, clock.now(), TIMEOUT)
    clock.advance(1)
    assert watch.check(100, 0, clock.now(), TIMEOUT) == 0.0 and not watch.watching
    assert watch.check(100, 0, clock.now(), TIMEOUT) == 0.0


def request(size: int) -> Request:
    return Request(b"POST", b"/", [], b"x" * size)


def test_pipelined_requests_are_bounded_by_count_and_by_bytes() -> None:
    assert queued_bytes([request(10), request(20)]) == 30
    assert not must_pause(1, 100, 32, 1024)
    assert must_pause(32, 0, 32, 1024)  # too many
    assert must_pause(1, 1025, 32, 1024)  # one large body is enough
    assert not may_resume(17, 0, 32, 1024) and may_resume(16, 0, 32, 1024)
    assert not may_resume(0, 513, 32, 1024) and may_resume(0, 512, 32, 1024)
    assert may_resume(0, 0, 1, 1024)  # a limit of one request still resumes once it is served


class Source:
    def __init__(self) -> None:
        self.reading = True
        self.abandoned = False
        self.events: list[str] = []

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def abandon(self) -> None:
        self.abandoned = True


class Sink:
    def __init__(self, events: list[str]) -> None:
        self.data: list[bytes] = []
        self.events = events
        self.error: ProxyError | None = None

    def stream_data(self, data: bytes) -> None:
        self.data.append(data)

    def stream_end(self) -> None:
        self.events.append("sink end")

    def stream_abort(self, error: ProxyError) -> None:
        self.error = error
        self.events.append("sink abort")


def make(limit: int = 100) -> tuple[BodyStream, Source, Sink]:
    source = Source()
    stream = BodyStream(source, -1, limit)
    stream.when_closed(lambda: source.events.append("closed"))
    return stream, source, Sink(source.events)


def test_pieces_wait_for_a_sink_up_to_the_limit_then_the_source_is_held() -> None:
    stream, source, sink = make(limit=100)
    stream.feed(b"a" * 60)
    assert source.reading
    stream.feed(b"b" * 40)
    assert not source.reading  # 100 bytes wait and nobody takes them
    stream.attach(sink)
    assert sink.data == [b"a" * 60 + b"b" * 40] and source.reading


def test_a_paused_sink_holds_the_source_until_it_resumes() -> None:
    stream, source, sink = make()
    stream.attach(sink)
    stream.pause()
    assert not source.reading
    stream.feed(b"late")  # what was already read still goes to the sink (its buffer is bounded by the watermark)
    assert sink.data == [b"late"]
    stream.resume()
    assert source.reading


def test_the_owner_hears_of_the_end_before_the_sink() -> None:
    stream, source, sink = make()
    stream.attach(sink)
    stream.feed(b"x")
    stream.end()
    assert source.events == ["closed", "sink end"]  # the connection is back in its pool first
    stream.feed(b"ignored")
    assert sink.data == [b"x"]


def test_an_end_before_the_sink_comes_is_delivered_on_attach() -> None:
    stream, source, sink = make()
    stream.feed(b"all")
    stream.end()
    stream.attach(sink)
    assert sink.data == [b"all"] and source.events == ["closed", "sink end"]


@pytest.mark.parametrize("attach_first", [True, False])
def test_a_failure_aborts_the_sink(attach_first: bool) -> None:
    stream, source, sink = make()
    if attach_first:
        stream.attach(sink)
    stream.feed(b"part")
    stream.fail(UpstreamReset("upstream_reset"))
    if not attach_first:
        assert stream.error is not None  # a consumer that has not written the head yet can still answer 502
        stream.attach(sink)
    assert sink.error is not None and sink.error.reason == "upstream_reset"
    assert source.events == ["closed", "sink abort"]


def test_abandon_drops_the_source_once() -> None:
    stream, source, sink = make()
    stream.attach(sink)
    stream.abandon()
    stream.abandon()
    stream.end()
    assert source.abandoned and source.events == ["closed"]
    late: list[str] = []
    stream.when_closed(lambda: late.append("now"))
    assert late == ["now"]


def test_discard_reads_to_the_end_without_back_pressure() -> None:
    stream, source, _ = make(limit=10)
    stream.feed(b"x" * 50)
    assert not source.reading
    stream.discard()
    assert source.reading
    stream.feed(b"y" * 1000)
    stream.end()
    assert source.events == ["closed"] and not source.abandoned
