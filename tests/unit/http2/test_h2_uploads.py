"""A downstream HTTP/2 stream whose body is still arriving (http2/uploads.py), over an in-memory transport: it is
dispatched with an upload, the caller's window reopens only as the sink takes bytes, a route that collects gets
the body whole, a body over the limit is a 413 that cancels the exchange, a reset reaches the sink, and the body
timeout does not blame the caller for a window the upstream keeps shut."""

from __future__ import annotations

import asyncio
from typing import Any

from h2.errors import ErrorCodes
from h2.events import WindowUpdated

from meshbatch.errors import ProxyError
from meshbatch.http.message import Request, Response
from meshbatch.http.parser import ParserLimits
from meshbatch.http.serving import Answer, Pending
from meshbatch.http.stream import BodyStream
from meshbatch.http.upload import Upload
from meshbatch.http2.limits import H2Limits
from testbed.h2peer import FakeTimers, H2Pair, request_headers

WINDOW = 65_535


class Exchange:
    """A dispatch that keeps the request, its answer callback and a sink for its upload (or collects it)."""

    def __init__(self, collect: bool = False, takes: bool = False) -> None:
        self.collect = collect
        self.takes = takes
        self.requests: list[Request] = []
        self.answers: list[Answer] = []
        self.data: list[bytes] = []
        self.ended: list[Any] = []
        self.aborted: list[ProxyError] = []
        self.cancelled = 0
        self.ready = 0

    def __call__(self, request: Request, answer: Answer) -> Pending | None:
        self.requests.append(request)
        self.answers.append(answer)
        upload = request.upload
        if upload is not None:
            if self.collect:
                upload.collect(self._ready)
            else:
                upload.attach(self)
        return self

    def _ready(self) -> None:
        self.ready += 1

    @property
    def upload(self) -> Upload:
        upload = self.requests[-1].upload
        assert upload is not None
        return upload

    def cancel(self) -> None:
        self.cancelled += 1

    def upload_data(self, data: bytes) -> None:
        self.data.append(data)
        if self.takes:
            self.upload.taken(len(data))

    def upload_end(self, trailers: Any) -> None:
        self.ended.append(trailers)

    def upload_abort(self, error: ProxyError) -> None:
        self.aborted.append(error)


def pair(exchange: Exchange, timers: FakeTimers | None = None, **settings: Any) -> H2Pair:
    settings.setdefault("http2", H2Limits(initial_window_size=WINDOW))
    return H2Pair(exchange, timers, uploads=True, **settings)


def start(peer: H2Pair, body: bytes, path: str = "/up") -> int:
    sid = peer.client.get_next_available_stream_id()
    peer.client.send_headers(sid, request_headers(path, "POST"))
    if body:
        peer.client.send_data(sid, body)
    peer.flush()
    return sid


def window_updates(peer: H2Pair, sid: int) -> int:
    return sum(e.delta or 0 for e in peer.answers.events if isinstance(e, WindowUpdated) and e.stream_id == sid)


async def test_a_body_still_arriving_is_dispatched_with_its_upload() -> None:
    exchange = Exchange()
    peer = pair(exchange)
    sid = start(peer, b"first")
    assert [r.target for r in exchange.requests] == [b"/up"] and exchange.requests[0].body == b""
    assert exchange.data == [b"first"]
    for _ in range(4):
        peer.client.send_data(sid, b"x" * 10_000)
    peer.flush()
    assert window_updates(peer, sid) == 0  # nothing taken: the caller's window stays shut
    exchange.upload.taken(40_005)
    peer.pull()
    assert window_updates(peer, sid) > 0
    peer.client.send_headers(sid, [(b"x-trailer", b"t")], end_stream=True)
    peer.flush()
    assert exchange.ended == [[(b"x-trailer", b"t")]]
    exchange.answers[0](Response(200, [], b"done"))
    peer.pull()
    assert peer.answers.body[sid] == b"done" and sid in peer.answers.ended


async def test_a_body_whole_in_the_first_read_is_dispatched_whole() -> None:
    exchange = Exchange()
    peer = pair(exchange)
    sid = peer.request("/whole", "POST", b"all of it")
    assert [(r.body, r.upload) for r in exchange.requests] == [(b"all of it", None)]
    assert sid == 1


async def test_a_route_that_collects_gets_the_body_whole() -> None:
    exchange = Exchange(collect=True)
    peer = pair(exchange)
    sid = start(peer, b"part 1, ")
    assert exchange.ready == 0
    peer.client.send_data(sid, b"part 2", end_stream=True)
    peer.flush()
    assert exchange.ready == 1 and exchange.requests[0].body == b"part 1, part 2"


async def test_a_streamed_body_over_the_limit_is_a_413_and_cancels_the_exchange() -> None:
    exchange = Exchange(takes=True)
    peer = pair(exchange, parser_limits=ParserLimits(max_body_bytes=1000))
    sid = start(peer, b"x" * 600)
    peer.client.send_data(sid, b"y" * 600)
    peer.flush()
    assert peer.answers.status[sid] == 413
    assert exchange.cancelled == 1 and [e.reason for e in exchange.aborted] == ["body_too_large"]


async def test_a_reset_reaches_the_sink_and_cancels_the_exchange() -> None:
    exchange = Exchange()
    peer = pair(exchange)
    sid = start(peer, b"some")
    peer.client.reset_stream(sid, ErrorCodes.CANCEL)
    peer.flush()
    assert exchange.cancelled == 1 and [e.reason for e in exchange.aborted] == ["downstream_reset"]


async def test_the_body_timeout_spares_a_stream_whose_upstream_holds_the_window() -> None:
    timers = FakeTimers()
    exchange = Exchange()
    peer = pair(exchange, timers, idle_timeout=60.0)
    sid = start(peer, b"waiting")
    timers.advance(120.0)
    peer.pull()
    assert sid not in peer.answers.status and exchange.cancelled == 0


async def test_the_upstream_answering_early_resets_the_callers_body() -> None:
    exchange = Exchange(takes=True)
    peer = pair(exchange)
    sid = start(peer, b"more to come")
    exchange.answers[0](Response(413, [], b"no thanks"))
    await asyncio.sleep(0)
    peer.pull()
    assert peer.answers.status[sid] == 413 and peer.answers.reset.get(sid) == ErrorCodes.NO_ERROR


async def test_a_stalled_upload_does_not_stall_the_connections_other_streams() -> None:
    exchange = Exchange()  # its sink takes nothing: the upstream is stalled
    peer = pair(exchange, http2=H2Limits(initial_window_size=WINDOW, connection_window_size=WINDOW))
    sid = start(peer, b"")
    for size in (16_000, 16_000, 16_000, 16_000, WINDOW - 64_000):
        peer.client.send_data(sid, b"x" * size)
    peer.flush()
    assert peer.client.local_flow_control_window(sid) == 0  # this stream is held back ...
    assert window_updates(peer, sid) == 0 and window_updates(peer, 0) > 0  # ... the connection is not
    other = peer.client.get_next_available_stream_id()
    peer.client.send_headers(other, request_headers("/other", "POST"))
    peer.client.send_data(other, b"y" * 1000, end_stream=True)
    peer.flush()
    assert [r.target for r in exchange.requests] == [b"/up", b"/other"] and exchange.requests[1].body == b"y" * 1000


class Source:
    """The producing end of a streamed answer (an upstream connection, here a list of what it was told)."""

    def __init__(self) -> None:
        self.told: list[str] = []

    def pause_reading(self) -> None:
        self.told.append("pause")

    def resume_reading(self) -> None:
        self.told.append("resume")

    def abandon(self) -> None:
        self.told.append("abandon")


def streamed(exchange: Exchange, source: Source) -> BodyStream:
    """Answer the last request with a head now and a body that streams (a bidi call's answer)."""
    body = BodyStream(source, -1, 1 << 20)
    response = Response(200, [(b"content-type", b"application/grpc")])
    response.stream = body
    exchange.answers[-1](response)
    return body


async def test_the_callers_next_messages_go_upstream_after_the_answers_head() -> None:
    # a bidi call: the upstream answered the first message and waits for the next
    exchange = Exchange(takes=True)
    peer = pair(exchange)
    sid = start(peer, b"ping 1")
    body = streamed(exchange, Source())
    body.feed(b"pong 1")
    await asyncio.sleep(0)
    peer.pull()
    assert peer.answers.status[sid] == 200 and peer.answers.body[sid] == b"pong 1"
    peer.client.send_data(sid, b"ping 2")
    peer.client.send_headers(sid, [(b"x-end", b"1")], end_stream=True)
    peer.flush()
    assert exchange.data == [b"ping 1", b"ping 2"] and exchange.ended == [[(b"x-end", b"1")]]
    body.feed(b"pong 2")
    body.end([(b"grpc-status", b"0")])
    peer.pull()
    assert peer.answers.body[sid] == b"pong 1pong 2" and sid in peer.answers.ended
    assert sid not in peer.answers.reset


async def test_a_body_over_the_limit_after_the_answers_head_resets_the_stream_and_the_upload() -> None:
    exchange = Exchange(takes=True)
    source = Source()
    peer = pair(exchange, parser_limits=ParserLimits(max_body_bytes=1000))
    sid = start(peer, b"x" * 600)
    streamed(exchange, source)
    await asyncio.sleep(0)
    peer.client.send_data(sid, b"y" * 600)  # (no 413 can follow a head that went out)
    peer.flush()
    peer.pull()
    assert [e.reason for e in exchange.aborted] == ["body_too_large"]  # the upstream call is cut ...
    assert peer.answers.reset.get(sid) == ErrorCodes.INTERNAL_ERROR and "abandon" in source.told  # ... and the answer
    assert exchange.data == [b"x" * 600]  # nothing beyond the limit went upstream
