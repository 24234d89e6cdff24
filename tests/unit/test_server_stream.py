"""The downstream connection without sockets: how a streamed answer is framed for each caller, how the
transport's watermarks reach the upstream, how a failure mid-body ends the connection, and the byte bound
on pipelined requests."""

from __future__ import annotations

import asyncio

from meshbatch.errors import UpstreamReset
from meshbatch.http.message import Request, Response
from meshbatch.http.server import HttpServerProtocol, ListenerState, ServerSettings, serve_handler
from meshbatch.http.stream import BodyStream
from testbed.transport import FakeTransport, connect


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


class Handler:
    """Answers each request with the next of `answers`; a request to /hold waits for `gate`."""

    def __init__(self, *answers: Response) -> None:
        self.answers = list(answers)
        self.gate = asyncio.Event()
        self.seen: list[Request] = []

    async def __call__(self, request: Request) -> Response:
        self.seen.append(request)
        if request.path == b"/hold":
            await self.gate.wait()
        return self.answers.pop(0) if self.answers else Response(200, [], b"ok")


def streamed(length: int = -1) -> tuple[Response, BodyStream, Source]:
    source = Source()
    stream = BodyStream(source, length, 1 << 20)
    response = Response(200, [(b"x-a", b"1")])
    response.stream = stream
    return response, stream, source


async def serve(handler: Handler, data: bytes, **settings: int) -> tuple[HttpServerProtocol, FakeTransport]:
    state = ListenerState(ServerSettings(dispatch=serve_handler(handler, asyncio.get_running_loop()),
                                         request_id_in_response=False, **settings))  # type: ignore[arg-type]
    protocol = HttpServerProtocol(state, asyncio.get_running_loop())
    transport = connect(protocol)
    protocol.data_received(data)
    await turns()
    return protocol, transport


async def turns(n: int = 3) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_an_http11_caller_gets_a_body_of_unknown_length_chunked_then_the_next_answer() -> None:
    response, stream, _ = streamed()
    two = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n"
    protocol, transport = await serve(Handler(response), two)
    assert transport.data == b"HTTP/1.1 200 OK\r\nx-a: 1\r\ntransfer-encoding: chunked\r\n\r\n"
    stream.feed(b"abc")
    stream.feed(b"defgh")
    assert protocol.busy and transport.data.endswith(b"3\r\nabc\r\n5\r\ndefgh\r\n")
    stream.end()
    await turns()
    assert transport.data.endswith(b"0\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
    assert not transport.closing


async def test_a_known_length_is_kept() -> None:
    response, stream, _ = streamed(length=8)
    _, transport = await serve(Handler(response), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    stream.feed(b"12345678")
    stream.end()
    assert transport.data == b"HTTP/1.1 200 OK\r\nx-a: 1\r\ncontent-length: 8\r\n\r\n12345678"


async def test_an_http10_caller_gets_a_body_of_unknown_length_ended_by_the_close() -> None:
    response, stream, _ = streamed()
    _, transport = await serve(Handler(response), b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    stream.feed(b"abc")
    assert transport.data == b"HTTP/1.1 200 OK\r\nx-a: 1\r\nconnection: close\r\n\r\nabc"
    assert not transport.closing
    stream.end()
    assert transport.closing and not transport.aborted


async def test_the_write_watermarks_pause_and_resume_the_upstream() -> None:
    response, stream, source = streamed()
    protocol, _ = await serve(Handler(response), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    protocol.pause_writing()
    assert not source.reading
    protocol.resume_writing()
    assert source.reading
    stream.end()


async def test_a_failure_mid_body_aborts_the_connection_and_is_counted() -> None:
    response, stream, _ = streamed(length=100)
    protocol, transport = await serve(Handler(response), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    stream.feed(b"x" * 10)
    stream.fail(UpstreamReset("upstream_reset"))
    assert transport.aborted and protocol.state.aborts == {"upstream_reset": 1}


async def test_a_failure_before_the_head_went_out_is_still_a_502() -> None:
    response, stream, _ = streamed(length=100)
    stream.fail(UpstreamReset("upstream_reset"))
    _, transport = await serve(Handler(response), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert transport.data.startswith(b"HTTP/1.1 502 ") and b'"upstream_reset"' in transport.data
    assert not transport.aborted


async def test_a_client_that_leaves_mid_body_abandons_the_upstream() -> None:
    response, _, source = streamed()
    _, transport = await serve(Handler(response), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    transport.peer_closed()
    assert source.abandoned


async def test_pipelined_bodies_beyond_the_byte_bound_pause_reading_until_served() -> None:
    handler = Handler()
    body = b"b" * 600
    post = b"POST /p HTTP/1.1\r\nHost: x\r\ncontent-length: 600\r\n\r\n" + body
    protocol, transport = await serve(handler, b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n" + post + post,
                                      max_pipelined_bytes=1000)
    assert not transport.reading  # 1200 body bytes wait behind the held request
    handler.gate.set()
    await turns(10)
    assert transport.reading and len(handler.seen) == 3
    assert transport.data.count(b"HTTP/1.1 200 OK") == 3
    assert protocol.machine is not None and not protocol.machine.parser.ready
