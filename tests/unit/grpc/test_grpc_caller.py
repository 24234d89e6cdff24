"""Every answer to a gRPC call made readable as a gRPC status (grpc/caller.py): local replies, an upstream's
plain HTTP answers, an upstream's gRPC answers passed on or repaired, and which requests count as gRPC."""

from __future__ import annotations

import pytest

from meshbatch.errors import DeadlineExceeded, Forbidden, NoRoute, Overloaded, PayloadTooLarge, ProxyError
from meshbatch.grpc.caller import MAX_FORWARDED_MESSAGE, for_caller, is_grpc
from meshbatch.grpc.replies import error_reply
from meshbatch.grpc.status import GrpcStatus as S
from meshbatch.http.message import Headers, Request, Response
from meshbatch.http.serialize import local_reply
from testbed.grpc_batch import Answer, grpc_answer, trailers_only

GRPC: Headers = [(b"content-type", b"application/grpc"), (b"te", b"trailers")]


def _request(headers: Headers, version: bytes = b"2") -> Request:
    return Request(b"POST", b"/pkg.Svc/Method", headers, version=version)


@pytest.mark.parametrize(("headers", "version", "grpc"), [
    (GRPC, b"2", True),
    ([(b"content-type", b"application/grpc+proto")], b"2", True),
    ([(b"content-type", b"application/grpc-web")], b"2", False),   # its clients read the status from the body
    ([(b"content-type", b"application/json")], b"2", False),
    ([], b"2", False),
    (GRPC, b"1.1", False),                                        # gRPC runs on HTTP/2 only
])
def test_which_requests_are_grpc(headers: Headers, version: bytes, grpc: bool) -> None:
    assert is_grpc(_request(headers, version)) is grpc


@pytest.mark.parametrize(("error", "code"), [
    (NoRoute("no_route", "no route matches"), S.UNAVAILABLE),
    (ProxyError("internal_error"), S.INTERNAL),
    (Forbidden("denied", "policy no-evil"), S.PERMISSION_DENIED),
    (DeadlineExceeded("deadline_exceeded"), S.DEADLINE_EXCEEDED),
    (PayloadTooLarge("body_too_large", "body exceeds 10 bytes"), S.RESOURCE_EXHAUSTED),
])
def test_a_local_reply_becomes_trailers_only_with_its_mapped_status(error: ProxyError, code: S) -> None:
    local = local_reply(error)
    answer = for_caller(local)
    read = Answer(answer)
    assert read.status == code
    assert read.text.startswith(error.reason)
    if error.detail:
        assert read.text == f"{error.reason}: {error.detail}"
    assert answer.body == b"" and answer.trailers is None
    assert (answer.flag, answer.reason) == (local.flag, local.reason)  # for logs and metrics


def test_a_full_queue_tells_the_client_when_to_retry() -> None:
    answer = for_caller(local_reply(Overloaded("queue_full", "queue full", retry_after=2.0)))
    read = Answer(answer)
    assert read.status == S.RESOURCE_EXHAUSTED
    assert read.headers[b"grpc-retry-pushback-ms"] == b"2000"


@pytest.mark.parametrize(("status", "code"), [
    (502, S.UNAVAILABLE), (503, S.UNAVAILABLE), (504, S.UNAVAILABLE), (429, S.UNAVAILABLE), (400, S.INTERNAL),
    (401, S.UNAUTHENTICATED), (403, S.PERMISSION_DENIED), (404, S.UNIMPLEMENTED), (500, S.UNKNOWN),
    (200, S.UNKNOWN),  # a 200 that is not gRPC
])
def test_an_upstreams_plain_http_answer_is_mapped_as_the_grpc_spec_says(status: int, code: S) -> None:
    upstream = Response(status, [(b"content-type", b"text/html"), (b"via", b"1.1 meshbatch")], b"<h1>oops</h1>")
    upstream.upstream = "127.0.0.1:9000"
    answer = for_caller(upstream)
    read = Answer(answer)
    assert read.status == code
    assert read.text == f"upstream answered HTTP {status} (text/html)"
    assert answer.upstream == "127.0.0.1:9000" and read.headers[b"via"] == b"1.1 meshbatch"


def test_a_plain_answer_streamed_is_abandoned() -> None:
    class Stream:
        abandoned = False

        def abandon(self) -> None:
            self.abandoned = True

    upstream = Response(503, [])
    stream = upstream.stream = Stream()  # type: ignore[assignment]
    assert Answer(for_caller(upstream)).status == S.UNAVAILABLE
    assert stream.abandoned


def test_grpc_answers_pass_through_unchanged() -> None:
    upstream = grpc_answer(b"result", 5, b"not%20found")
    assert for_caller(upstream) is upstream
    assert upstream.trailers == [(b"grpc-status", b"5"), (b"grpc-message", b"not%20found")]
    only = trailers_only(14, b"down")
    assert for_caller(only) is only and Answer(only).status == S.UNAVAILABLE
    batched = error_reply(ProxyError("internal_error"))  # a batching codec's own gRPC answer, with its reason
    assert batched.reason and for_caller(batched) is batched


def test_a_whole_grpc_answer_without_status_gets_internal() -> None:
    upstream = Response(200, [(b"content-type", b"application/grpc")], b"\x00\x00\x00\x00\x01x")
    read = Answer(for_caller(upstream))
    assert read.status == S.INTERNAL
    assert read.text == "upstream answer ended without grpc-status"


def test_a_status_that_is_not_a_code_is_unknown() -> None:
    for value in (b"banana", b"17", b"-1", b"999999999999", b""):
        upstream = grpc_answer(b"x")
        upstream.trailers = [(b"grpc-status", value)]
        assert Answer(for_caller(upstream)).status == S.UNKNOWN, value
    only = trailers_only(0)
    only.headers[1] = (b"grpc-status", b"x1")
    assert Answer(for_caller(only)).status == S.UNKNOWN


def test_a_huge_grpc_message_is_cut_never_inside_an_escape() -> None:
    for pad in range(3):
        text = b"a" * (MAX_FORWARDED_MESSAGE - 3 + pad) + b"%C3%A9" * 2000
        upstream = trailers_only(13, text)
        value = dict(for_caller(upstream).headers)[b"grpc-message"]
        assert len(value) <= MAX_FORWARDED_MESSAGE + 3
        assert value.endswith(b"...")
        body = value[:-3]
        assert b"%" not in body[-2:], body[-6:]
