"""The gRPC answers the proxy makes: unary and trailers-only shapes, grpc-message's encoding, and the status each
of the proxy's own errors (errors.py) becomes."""

import inspect

import pytest

from meshbatch import errors
from meshbatch.errors import ProxyError
from meshbatch.grpc import mapping, replies
from meshbatch.grpc.status import GrpcStatus as S
from meshbatch.http.message import Response


def fields(response):
    return dict(response.headers)


def test_trailers_only_answer():
    response = replies.trailers_only(S.UNAVAILABLE, "no healthy upstream", [(b"x-a", b"1")])
    assert response.status == 200 and response.body == b"" and response.trailers is None
    assert response.headers == [(b"content-type", b"application/grpc"), (b"grpc-status", b"14"),
                                (b"grpc-message", b"no healthy upstream"), (b"x-a", b"1")]


def test_unary_answer():
    response = replies.unary(b"msg", [(b"x-init", b"1")], [(b"x-meshbatch-batch-size", b"3")])
    assert response.status == 200 and response.body == b"\x00\x00\x00\x00\x03msg"
    assert response.headers == [(b"content-type", b"application/grpc"), (b"x-init", b"1")]
    assert response.trailers == [(b"grpc-status", b"0"), (b"x-meshbatch-batch-size", b"3")]


@pytest.mark.parametrize(("text", "wire"), [
    ("plain text", b"plain text"),
    ("100% sure", b"100%25 sure"),
    ("line\nbreak", b"line%0Abreak"),
    ("caf\u00e9", b"caf%C3%A9"),
    ("\u2603", b"%E2%98%83"),
    ("tab\there", b"tab%09here"),
])
def test_grpc_message_percent_encoding(text, wire):
    assert replies.encode_message(text) == wire
    assert replies.decode_message(wire) == text


def test_malformed_escapes_are_kept():
    assert replies.decode_message(b"50%zz off %4") == "50%zz off %4"
    assert replies.decode_message(b"\xff%41") == "\ufffdA"


def test_a_long_message_is_cut():
    response = replies.trailers_only(S.INTERNAL, "x" * 5000)
    assert len(fields(response)[b"grpc-message"]) == replies.MAX_MESSAGE


def test_error_reply_carries_reason_flag_and_pushback():
    response = replies.error_reply(errors.Overloaded("queue_full", "12 items are queued", retry_after=2.5))
    assert fields(response)[b"grpc-status"] == b"8"
    assert fields(response)[b"grpc-message"] == b"queue_full: 12 items are queued"
    assert fields(response)[b"grpc-retry-pushback-ms"] == b"2500"
    assert response.reason == "queue_full" and response.flag == "UO"


def test_status_of_reads_trailers_first_then_a_trailers_only_head():
    answer = Response(200, [(b"content-type", b"application/grpc")], b"")
    assert replies.status_of(answer) is None
    answer.trailers = [(b"grpc-status", b"5"), (b"grpc-message", b"no%20sku")]
    assert replies.status_of(answer) == (5, "no sku")
    head_only = Response(200, [(b"grpc-status", b"14")])
    assert replies.status_of(head_only) == (14, "")
    assert replies.status_of(Response(200, [(b"grpc-status", b"banana")])) == (2, "")


# Every reason the proxy answers with a status of its own: what a gRPC client sees.
EXPECTED = {
    "bad_request": S.INTERNAL, "denied": S.PERMISSION_DENIED, "no_route": S.UNAVAILABLE,
    "method_not_allowed": S.UNIMPLEMENTED, "header_timeout": S.DEADLINE_EXCEEDED,
    "body_too_large": S.RESOURCE_EXHAUSTED,
    "headers_too_large": S.RESOURCE_EXHAUSTED, "overloaded": S.RESOURCE_EXHAUSTED,
    "bad_upstream_response": S.INTERNAL, "upstream_reset": S.UNAVAILABLE, "no_healthy_upstream": S.UNAVAILABLE,
    "upstream_connect_failed": S.UNAVAILABLE, "upstream_pool_overflow": S.UNAVAILABLE,
    "upstream_timeout": S.DEADLINE_EXCEEDED, "connect_timeout": S.UNAVAILABLE,
    "deadline_exceeded": S.DEADLINE_EXCEEDED, "draining": S.UNAVAILABLE, "circuit_open": S.UNAVAILABLE,
    "concurrency_limited": S.UNAVAILABLE,
    "upstream_refused_stream": S.UNAVAILABLE, "rate_limited": S.RESOURCE_EXHAUSTED, "internal_error": S.INTERNAL,
}


def test_every_error_class_has_its_status():
    classes = [c for c in vars(errors).values() if inspect.isclass(c) and issubclass(c, ProxyError)
               and c is not errors.FaultInjected]
    assert {c.default_reason for c in classes} == set(EXPECTED)
    for cls in classes:
        assert mapping.for_error(cls()) == EXPECTED[cls.default_reason], cls.__name__


def test_401_reasons_and_other_statuses():
    assert mapping.for_reason("jwt_missing", 401) == S.UNAUTHENTICATED
    assert mapping.for_reason("queue_full", 429) == S.RESOURCE_EXHAUSTED
    assert mapping.for_reason("whatever", 502) == S.UNAVAILABLE
    assert mapping.for_reason("whatever", 507) == S.INTERNAL
    assert mapping.for_error(errors.FaultInjected(503)) == S.UNAVAILABLE
    assert mapping.for_error(errors.FaultInjected(403)) == S.PERMISSION_DENIED
    # a batch refused by an upstream that speaks plain HTTP: the gRPC spec's table for its status
    assert mapping.for_reason("upstream_status_503", 502) == S.UNAVAILABLE
    assert mapping.for_reason("upstream_status_404", 502) == S.UNIMPLEMENTED
    assert mapping.for_reason("upstream_status_400", 502) == S.INTERNAL


def test_the_grpc_spec_http_table():
    table = {400: S.INTERNAL, 401: S.UNAUTHENTICATED, 403: S.PERMISSION_DENIED, 404: S.UNIMPLEMENTED,
             429: S.UNAVAILABLE, 502: S.UNAVAILABLE, 503: S.UNAVAILABLE, 504: S.UNAVAILABLE, 500: S.UNKNOWN,
             418: S.UNKNOWN}
    for status, code in table.items():
        assert mapping.from_http(status) == code


def test_to_http_round_trips_the_semantic_table():
    for code in S:
        assert mapping.from_item_http(mapping.to_http(code)) in {code, S.INVALID_ARGUMENT, S.ABORTED,
                                                                 S.INTERNAL}
    assert mapping.to_http(S.UNAVAILABLE) == 503 and mapping.to_http(99) == 500
    assert mapping.from_item_http(422) == S.INVALID_ARGUMENT and mapping.from_item_http(201) == S.OK
