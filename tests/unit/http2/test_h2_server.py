"""The HTTP/2 server connection without sockets: requests become the same `Request`s as HTTP/1.1 ones, answers
go out as HEADERS, DATA within the windows and trailers, resets cancel what is under way, drain sends GOAWAY."""

from __future__ import annotations

import asyncio
from typing import Any

from h2.errors import ErrorCodes
from h2.events import TrailersReceived
from hyperframe.frame import DataFrame

from meshbatch.http.message import Request, Response
from meshbatch.http.serving import Answer, Pending
from meshbatch.http.stream import BodyStream
from testbed.h2peer import H2Pair, request_headers


async def turns(n: int = 3) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


class Held:
    """A dispatch that keeps each request and its answer callback; `cancelled` lists withdrawn ones."""

    def __init__(self) -> None:
        self.calls: list[tuple[Request, Answer]] = []
        self.cancelled: list[Request] = []

    def __call__(self, request: Request, answer: Answer) -> Pending | None:
        self.calls.append((request, answer))
        held = self

        class Under:
            def cancel(self) -> object:
                held.cancelled.append(request)
                return None

        return Under()


def echo(request: Request, answer: Answer) -> Pending | None:
    answer(Response(200, [(b"content-type", b"text/plain"), (b"connection", b"keep-alive")],
                    request.method + b" " + request.target + b" " + request.body))
    return None


async def pair(dispatch: Any = echo, **settings: Any) -> H2Pair:
    peer = H2Pair(dispatch, **settings)
    peer.flush()
    return peer


async def test_a_request_becomes_the_request_an_http1_one_would() -> None:
    held = Held()
    peer = await pair(held)
    peer.request("/a/./b//c?q=1", "POST", b"hello", extra=[("x-forwarded-for", "1.2.3.4"), ("te", "trailers")])
    (request, answer), = held.calls
    assert request.method == b"POST" and request.target == b"/a/b/c?q=1" and request.body == b"hello"
    assert request.version == b"2" and request.host == b"test" and request.client == "127.0.0.1"
    assert (b"host", b"test") in request.headers and not any(n.startswith(b":") for n, _ in request.headers)
    assert len(request.request_id) == 32 and (b"x-request-id", request.request_id) in request.headers
    answer(Response(201, [(b"transfer-encoding", b"chunked"), (b"x-a", b"1")], b"done"))
    peer.pull()
    sid = 1
    assert peer.answers.status[sid] == 201 and peer.answers.body[sid] == b"done" and sid in peer.answers.ended
    fields = peer.answers.headers[sid]
    assert fields[b"x-a"] == b"1" and b"transfer-encoding" not in fields
    assert fields[b"x-request-id"] == request.request_id and fields[b"content-length"] == b"4"


async def test_many_streams_on_one_connection_each_get_their_answer() -> None:
    peer = await pair()
    sids = [peer.request(f"/n/{i}") for i in range(20)]
    assert all(peer.answers.body[s] == b"GET /n/%d " % i for i, s in enumerate(sids))


async def test_a_bad_head_is_answered_on_its_stream_and_the_connection_goes_on() -> None:
    peer = await pair()
    bad = peer.request("/a%2fb")
    dup = peer.request("/x", extra=[("content-type", "a"), ("content-type", "b")])
    good = peer.request("/ok")
    assert peer.answers.status[bad] == 400 and peer.answers.status[dup] == 400
    assert peer.answers.body[good] == b"GET /ok "
    assert not peer.transport.closing


async def test_a_malformed_head_is_refused_on_its_stream_and_never_dispatched() -> None:
    from hpack import Decoder, Encoder
    from hyperframe.frame import HeadersFrame

    from testbed.h2peer import frame

    held = Held()
    peer = await pair(held)
    encoder = Encoder()  # the client's own encoder would refuse these fields: the blocks are written by hand
    bad = [request_headers("/u", extra=[("X-Upper", "1")]), request_headers("/c", extra=[("connection", "close")]),
           [(b":path", b"/late"), *request_headers("/p")[1:], (b"x", b"1"), (b":method", b"GET")]]
    for sid, fields in zip((1, 3, 5), bad, strict=True):
        peer.raw(frame(0x1, 0x5, sid, encoder.encode(fields)))  # HEADERS, END_STREAM | END_HEADERS
    peer.server.write_pending()
    decoder = Decoder()
    statuses = {f.stream_id: dict(decoder.decode(f.data, raw=True))[b":status"] for f in peer.frames()
                if isinstance(f, HeadersFrame)}
    assert statuses == {1: b"400", 3: b"400", 5: b"400"} and not held.calls
    assert peer.server.streams == {} and not peer.transport.closing


async def test_body_and_header_limits_answer_413_and_431() -> None:
    from meshbatch.http.parser import ParserLimits

    peer = await pair(parser_limits=ParserLimits(max_header_bytes=1024, max_body_bytes=100))
    big = peer.request("/big", "POST", b"x" * 101)
    declared = peer.client.get_next_available_stream_id()  # refused on its head, before any body comes
    peer.client.send_headers(declared, request_headers("/cl", "POST", extra=[("content-length", "1000")]))
    peer.flush()
    long = peer.request("/h", extra=[("x-long", "v" * 1500)])
    assert peer.answers.status[big] == 413 and peer.answers.status[declared] == 413
    assert peer.answers.status[long] == 431
    fine = peer.request("/fine", "POST", b"x" * 100)
    assert peer.answers.status[fine] == 200 and not peer.transport.closing


async def test_a_client_reset_cancels_what_is_under_way() -> None:
    held = Held()
    peer = await pair(held)
    sid = peer.request("/slow")
    peer.client.reset_stream(sid, ErrorCodes.CANCEL)
    peer.flush()
    assert held.cancelled == [held.calls[0][0]]
    held.calls[0][1](Response(200, [], b"late"))  # an answer after the reset goes nowhere
    peer.pull()
    assert sid not in peer.answers.status and not peer.server.streams


async def test_trailers_both_ways() -> None:
    held = Held()
    peer = await pair(held)
    sid = peer.client.get_next_available_stream_id()
    peer.client.send_headers(sid, request_headers("/t", "POST", extra=[("te", "trailers")]))
    peer.client.send_data(sid, b"body")
    peer.client.send_headers(sid, [(b"x-sum", b"42")], end_stream=True)
    peer.flush()
    request, answer = held.calls[0]
    assert request.trailers == [(b"x-sum", b"42")] and request.body == b"body"
    response = Response(200, [(b"content-type", b"application/grpc")], b"msg")
    response.trailers = [(b"grpc-status", b"0")]
    answer(response)
    peer.pull()
    trailers = [e for e in peer.answers.events if isinstance(e, TrailersReceived)]
    assert peer.answers.body[sid] == b"msg" and trailers and dict(trailers[0].headers)[b"grpc-status"] == b"0"


async def test_a_body_larger_than_the_window_waits_for_credit() -> None:
    body = b"y" * 200_000  # more than the client's 65535-byte window
    peer = await pair(lambda request, answer: answer(Response(200, [], body)))
    sid = peer.request("/big")
    assert peer.answers.body[sid] == body and sid in peer.answers.ended


class Source:
    def __init__(self) -> None:
        self.reading = True
        self.abandoned = False

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def abandon(self) -> None:
        self.abandoned = True


async def test_a_streamed_answer_flows_as_data_frames() -> None:
    source = Source()
    stream = BodyStream(source, -1, 1 << 20)
    response = Response(200, [(b"x-s", b"1")])
    response.stream = stream
    peer = await pair(lambda request, answer: answer(response))
    sid = peer.request("/stream")
    stream.feed(b"part1-")
    stream.feed(b"part2")
    peer.pull()
    assert peer.answers.body[sid] == b"part1-part2" and sid not in peer.answers.ended
    stream.end()
    peer.pull()
    assert sid in peer.answers.ended and b"content-length" not in peer.answers.headers[sid]


async def test_drain_sends_goaway_finishes_open_streams_then_closes() -> None:
    held = Held()
    peer = await pair(held)
    sid = peer.request("/open")
    peer.state.drain()
    peer.pull()
    assert peer.answers.goaway is not None and peer.answers.goaway.last_stream_id == sid
    assert not peer.transport.closing
    held.calls[0][1](Response(200, [], b"finished"))  # (h2's client reads nothing after a GOAWAY: raw frames)
    frames = peer.frames()
    kinds = [type(f).__name__ for f in frames]
    assert kinds.index("GoAwayFrame") < kinds.index("DataFrame")
    data = [f for f in frames if isinstance(f, DataFrame)]
    assert data[-1].data == b"finished" and "END_STREAM" in data[-1].flags and peer.transport.closing


async def test_head_answers_have_no_body() -> None:
    peer = await pair()
    sid = peer.request("/h", "HEAD")
    assert sid in peer.answers.ended and not peer.answers.body.get(sid)


async def test_answers_completed_in_one_turn_of_the_loop_go_out_in_one_write() -> None:
    held = Held()
    peer = await pair(held)
    first, second = peer.request("/one"), peer.request("/two")
    before = len(peer.transport.written)
    for request, answer in held.calls:  # as two upstream reads in one turn would answer them
        answer(Response(200, [], request.target))
    assert len(peer.transport.written) == before  # deferred to the end of the turn
    await asyncio.sleep(0)  # the turn ends
    assert len(peer.transport.written) == before + 1
    peer.pull()
    assert peer.answers.body[first] == b"/one" and peer.answers.body[second] == b"/two"
