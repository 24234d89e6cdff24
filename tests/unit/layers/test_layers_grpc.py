"""gRPC on plain routes, in the layers: grpc-timeout as the deadline and each attempt's budget upstream, retries
on gRPC statuses, and the config that names them."""

from __future__ import annotations

import pytest

from meshbatch.config.model import Retry
from meshbatch.errors import BadRequest
from meshbatch.http.message import Headers, Request, Response
from meshbatch.layers.retry import RetryPolicy
from meshbatch.layers.timeout import route_deadline, upstream_timeout
from meshbatch.service import Call
from meshbatch.upstream.headers import request_headers
from testbed.grpc_batch import grpc_answer, trailers_only


def _call(headers: Headers, received_at: float = 100.0) -> Call:
    return Call(Request(b"POST", b"/pkg.Svc/M", headers, version=b"2", received_at=received_at))


@pytest.mark.parametrize(("headers", "deadline", "grpc"), [
    ([], 102.0, False),                                                               # the route's 2 s
    ([(b"grpc-timeout", b"500m")], 100.5, True),                                      # the caller's, smaller
    ([(b"grpc-timeout", b"1H")], 102.0, True),                                        # the route's, smaller
    ([(b"grpc-timeout", b"300m"), (b"x-meshbatch-deadline-ms", b"200")], 100.2, True),  # the smallest wins
    ([(b"x-meshbatch-deadline-ms", b"100"), (b"grpc-timeout", b"1S")], 100.1, True),
    ([(b"grpc-timeout", b"0n")], 100.0, True),                                        # spent: 504 in the layer
])
def test_grpc_timeout_is_a_caller_budget(headers: Headers, deadline: float, grpc: bool) -> None:
    call = _call(headers)
    assert route_deadline(call, 2.0, now=100.05) == pytest.approx(deadline)
    assert call.grpc_timeout is grpc
    assert route_deadline(call, 9.0, now=101.0) == pytest.approx(deadline)  # fixed on first use


@pytest.mark.parametrize("value", [b"", b"10", b"1s", b"123456789S", b"-1S", b"1.5S", b"\xff\xfeS", b"1 S"])
def test_a_malformed_grpc_timeout_is_a_bad_request(value: bytes) -> None:
    with pytest.raises(BadRequest) as caught:
        route_deadline(_call([(b"grpc-timeout", value)]), 2.0, now=100.0)
    assert caught.value.reason == "bad_grpc_timeout"


def test_each_attempt_sends_the_time_left_and_never_the_callers_own() -> None:
    call = _call([(b"content-type", b"application/grpc"), (b"grpc-timeout", b"2S")])
    deadline = route_deadline(call, 30.0, now=100.0)
    headers = request_headers(call.request)
    assert b"grpc-timeout" not in dict(headers)  # replaced per attempt, not passed on as it came
    first = dict(upstream_timeout(headers, deadline, now=100.25))
    assert first[b"grpc-timeout"] == b"1750000u"
    later = dict(upstream_timeout(headers, deadline, now=101.5))  # a retry: less is left
    assert later[b"grpc-timeout"] == b"500000u"
    assert b"grpc-timeout" not in dict(headers)  # the shared list is left alone


def _policy(*on: str) -> RetryPolicy:
    return RetryPolicy("r", Retry.model_validate({"retry_on": list(on)}))


def test_retries_on_grpc_statuses_read_from_trailers_or_a_trailers_only_head() -> None:
    policy = _policy("unavailable", "resource-exhausted")
    assert policy.retriable_response(trailers_only(14))
    assert policy.retriable_response(grpc_answer(b"", 8))
    assert not policy.retriable_response(grpc_answer(b"", 13))
    assert not policy.retriable_response(grpc_answer(b"ok"))
    assert not policy.retriable_response(Response(503, []))  # gateway-error is not named
    gateway = _policy("gateway-error", "cancelled", "deadline-exceeded", "internal")
    assert gateway.retriable_response(Response(503, []))
    for code in (1, 4, 13):
        assert gateway.retriable_response(grpc_answer(b"", code))
    assert not gateway.retriable_response(trailers_only(14))
    plain = _policy("5xx")
    assert not plain.grpc_statuses and not plain.retriable_response(trailers_only(14))


def test_a_bad_grpc_status_is_unknown_and_never_retried() -> None:
    policy = _policy("unavailable")
    answer = grpc_answer(b"")
    answer.trailers = [(b"grpc-status", b"14x")]
    assert not policy.retriable_response(answer)


def test_retry_conditions_in_config() -> None:
    Retry.model_validate({"retry_on": ["unavailable", "cancelled", "deadline-exceeded", "internal",
                                       "resource-exhausted", "reset"]})
    with pytest.raises(ValueError, match="retry_on"):
        Retry.model_validate({"retry_on": ["not-found"]})
