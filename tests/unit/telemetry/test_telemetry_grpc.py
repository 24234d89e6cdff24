"""gRPC calls counted and logged by grpc-status: `meshbatch_grpc_requests_total` and the access log's
`grpc_status`, only for gRPC answers on HTTP/2."""

from __future__ import annotations

import io

import orjson

from meshbatch.config.model import AccessLog as AccessLogConfig
from meshbatch.http.message import Request, Response
from meshbatch.telemetry.access_log import AccessLog
from meshbatch.telemetry.metrics import Registry
from meshbatch.telemetry.requests import RequestStats, grpc_status
from testbed.grpc_batch import grpc_answer, trailers_only
from testbed.proxy import metric_value


def _request(version: bytes = b"2", route: str = "rpc") -> Request:
    request = Request(b"POST", b"/pkg.Svc/M", [(b"content-type", b"application/grpc")], version=version)
    request.route = route
    return request


def test_the_status_of_a_grpc_answer() -> None:
    assert grpc_status(grpc_answer(b"x", 5)) == 5
    assert grpc_status(trailers_only(14)) == 14
    assert grpc_status(Response(200, [(b"content-type", b"application/json")])) is None
    assert grpc_status(Response(200, [(b"content-type", b"application/grpc")])) is None  # trailers still to come
    assert grpc_status(Response(503, [])) is None


def test_counts_by_route_and_grpc_status() -> None:
    registry = Registry()
    stats = RequestStats("main", registry)
    stats(_request(), grpc_answer(b"x"), 0.001)
    stats(_request(), grpc_answer(b"x"), 0.001)
    stats(_request(), trailers_only(14), 0.001)
    stats(_request(route=""), trailers_only(12), 0.001)
    stats(_request(version=b"1.1"), grpc_answer(b"x"), 0.001)  # not looked at on HTTP/1.1
    stats(_request(), Response(200, [(b"content-type", b"text/plain")]), 0.001)
    unknown = grpc_answer(b"x")
    unknown.trailers = [(b"grpc-status", b"42")]
    stats(_request(), unknown, 0.001)
    assert stats.grpc_count("rpc", 0) == 2
    text = registry.render().decode()
    assert metric_value(text, "meshbatch_grpc_requests_total", listener="main", route="rpc", grpc_status="ok") == 2
    assert metric_value(text, "meshbatch_grpc_requests_total", route="rpc", grpc_status="unavailable") == 1
    assert metric_value(text, "meshbatch_grpc_requests_total", route="-", grpc_status="unimplemented") == 1
    assert metric_value(text, "meshbatch_grpc_requests_total", route="rpc", grpc_status="42") == 1
    assert metric_value(text, "meshbatch_requests_total", route="rpc", status="200") == 6


async def test_the_access_log_has_grpc_status() -> None:
    out = io.BytesIO()
    log = AccessLog(AccessLogConfig(), Registry(), out=out, rng=lambda: 0.0)  # type: ignore[call-arg]
    observer = log.observer("main", lambda *a: None)
    observer(_request(), trailers_only(4, b"deadline"), 0.001)
    observer(_request(version=b"1.1"), Response(200, []), 0.001)
    await log.close()
    lines = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert [line["grpc_status"] for line in lines] == [4, None]


async def test_sampling_keeps_grpc_errors() -> None:
    out = io.BytesIO()
    log = AccessLog(AccessLogConfig(sample=0.5), Registry(), out=out, rng=lambda: 0.9)  # every draw loses
    observer = log.observer("main", lambda *a: None)
    observer(_request(), grpc_answer(b"x"), 0.001)                 # OK: sampled out
    observer(_request(), grpc_answer(b"x", 14), 0.001)             # UNAVAILABLE from the upstream: kept
    observer(_request(version=b"1.1"), grpc_answer(b"x", 14), 0.001)  # not gRPC on HTTP/1.1: sampled out
    await log.close()
    assert [orjson.loads(line)["grpc_status"] for line in out.getvalue().splitlines()] == [14]
