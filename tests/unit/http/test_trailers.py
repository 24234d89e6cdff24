"""Trailers across protocols: a chunked HTTP/1.1 answer's trailer section read into `Response.trailers` (in any
split of its bytes, whatever precedes it), and an answer with trailers written to an HTTP/1.1 caller as a chunked
body with its trailer section; the answer without trailers keeps its Content-Length framing."""

from __future__ import annotations

import httptools
import pytest

from meshbatch.http.client_machine import ENDED, FAILED, IDLE, NOTHING, ResponseReader
from meshbatch.http.message import Response
from meshbatch.http.serialize import encode_response
from meshbatch.http.trailers import trailer_section

HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: grpc-status\r\n\r\n"
WITH_TRAILERS = HEAD + b"5\r\nhello\r\n6\r\n world\r\n0\r\ngrpc-status: 0\r\nGrpc-Message:  fine \r\n\r\n"


def read(pieces: list[bytes]) -> tuple[list[int], ResponseReader]:
    machine = ResponseReader(1 << 20)
    machine.start(False)
    return [machine.feed(piece, 0) for piece in pieces], machine


@pytest.mark.parametrize("size", [1, 2, 3, 7, 16, len(WITH_TRAILERS)])
def test_a_chunked_answers_trailers_are_read_in_any_split(size: int) -> None:
    events, machine = read([WITH_TRAILERS[i:i + size] for i in range(0, len(WITH_TRAILERS), size)])
    assert events[-1] == ENDED and set(events[:-1]) <= {NOTHING}
    assert machine.reusable and machine.state == IDLE
    response = machine.response()
    assert response.body == b"hello world"
    assert response.trailers == [(b"grpc-status", b"0"), (b"grpc-message", b"fine")]


@pytest.mark.parametrize("end", [b"0\r\n\r\n", b"000\r\n\r\n", b"0;ext=1\r\n\r\n", b"0;name=\"a: b\"\r\n\r\n"])
def test_no_trailer_section_means_no_trailers(end: bytes) -> None:
    events, machine = read([HEAD + b"2\r\nok\r\n" + end])
    assert events == [ENDED] and machine.reusable
    assert machine.response().trailers is None


def test_a_body_that_looks_like_a_last_chunk_is_not_mistaken() -> None:
    body = b"x\r\n0\r\na: b\r\n"
    answer = HEAD + b"%x\r\n%s\r\n0\r\nc: d\r\n\r\n" % (len(body), body)
    _, machine = read([answer])
    response = machine.response()
    assert response.body == body and response.trailers == [(b"c", b"d")]


def test_fields_a_trailer_may_not_carry_are_dropped() -> None:
    _, machine = read([HEAD + b"0\r\nhost: evil\r\nset-cookie: a=b\r\nauthorization: x\r\nx-ok: 1\r\n\r\n"])
    assert machine.response().trailers == [(b"x-ok", b"1")]
    events, machine = read([HEAD + b"0\r\ncontent-length: 5\r\n\r\n"])  # framing in trailers: refused outright
    assert events == [FAILED] and machine.error is not None and machine.error.status == 502


def test_a_trailer_section_without_end_is_bounded() -> None:
    machine = ResponseReader(1 << 20)
    machine.start(False)
    assert machine.feed(HEAD + b"2\r\nok\r\n0\r\n", 0) == NOTHING
    event = NOTHING
    for _ in range(200):
        event = machine.feed(b"x-pad: " + b"p" * 1000 + b"\r\n", 0)
        if event != NOTHING:
            break
    assert event == FAILED
    assert machine.error is not None and machine.error.reason in ("upstream_headers_too_large",
                                                                  "bad_upstream_response")


def test_the_section_reader_alone() -> None:
    assert trailer_section(b"ok\r\n0\r\n\r\n") is None
    assert trailer_section(b"ok\r\n0\r\na: 1\r\nB:2\r\n\r\n") == [(b"a", b"1"), (b"b", b"2")]
    assert trailer_section(b"a: 1\r\n\r\n") is None  # does not reach back to the last chunk
    assert trailer_section(b"ok\r\n0\r\nnot a field\r\n\r\n") is None


# writing to an HTTP/1.1 caller ------------------------------------------------------------------------------
def parse(data: bytes) -> tuple[dict[bytes, bytes], bytes, bool]:
    got: dict[str, object] = {"headers": {}, "body": b"", "done": False}

    class Sink:
        def on_header(self, name: bytes, value: bytes) -> None:
            got["headers"][name.lower()] = value  # type: ignore[index]

        def on_body(self, body: bytes) -> None:
            got["body"] += body  # type: ignore[operator]

        def on_message_complete(self) -> None:
            got["done"] = True

    httptools.HttpResponseParser(Sink()).feed_data(data)
    return got["headers"], got["body"], got["done"]  # type: ignore[return-value]


def test_an_answer_with_trailers_is_written_chunked_with_its_trailer_section() -> None:
    response = Response(200, [(b"content-type", b"application/grpc")], b"payload")
    response.trailers = [(b"grpc-status", b"0"), (b"grpc-message", b"ok")]
    data = encode_response(response, keep_alive=True, request_id=b"r1")
    assert data.endswith(b"7\r\npayload\r\n0\r\ngrpc-status: 0\r\ngrpc-message: ok\r\n\r\n")
    headers, body, done = parse(data)
    assert done and body == b"payload"
    assert headers[b"transfer-encoding"] == b"chunked" and b"content-length" not in headers
    assert headers[b"trailer"] == b"grpc-status, grpc-message"
    assert headers[b"grpc-status"] == b"0"  # (the parser reports trailer fields as headers)


def test_an_empty_body_with_trailers_and_the_cases_without_a_body() -> None:
    response = Response(200, [], b"")
    response.trailers = [(b"grpc-status", b"14")]
    assert encode_response(response, keep_alive=False).endswith(
        b"connection: close\r\n\r\n0\r\ngrpc-status: 14\r\n\r\n")
    for status, head in ((204, False), (304, False), (200, True)):
        response = Response(status, [], b"")
        response.trailers = [(b"grpc-status", b"0")]
        assert b"grpc-status" not in encode_response(response, keep_alive=True, head=head)


def test_without_trailers_the_answer_is_as_before() -> None:
    response = Response(200, [(b"a", b"b")], b"xy")
    assert encode_response(response, keep_alive=True) == b"HTTP/1.1 200 OK\r\na: b\r\ncontent-length: 2\r\n\r\nxy"
    response.trailers = []
    assert b"content-length: 2" in encode_response(response, keep_alive=True)
