"""Tracing: a SERVER span per caller request (child of its traceparent), a CLIENT span per upstream batch linked to
its members, W3C propagation, and sampling that follows the members. Spans are captured in memory."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from meshbatch.config.model import Match
from meshbatch.config.model import Tracing as TracingConfig
from meshbatch.errors import GatewayTimeout
from meshbatch.http.message import Request, Response
from meshbatch.routing.match import RouteMatcher, RouteTable
from meshbatch.runtime.listener import ListenerStack
from meshbatch.service import Call, RouteStack, Service
from meshbatch.telemetry.spans import BatchSpans, RequestSpans, format_traceparent, parse_traceparent
from meshbatch.telemetry.tracing import Tracing

sys.path.insert(0, str(Path(__file__).parents[1] / "batching"))
from batching_support import header, make_handler, request, settle, submit

CALLER = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"


def _tracing(sample: float = 1.0) -> tuple[Tracing, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    return Tracing(TracingConfig(exporter="console", sample=sample), exporter, synchronous=True), exporter


def _traceparent(flags: str = "01", trace: str = CALLER) -> bytes:
    return f"00-{trace}-{CALLER_SPAN}-{flags}".encode()


def _by_kind(spans: tuple[ReadableSpan, ...], kind: SpanKind) -> list[ReadableSpan]:
    return [s for s in spans if s.kind == kind]


def traced(service: Service, tracing: Tracing, route: str = "orders") -> ListenerStack:
    """A listener whose one route is `service`, with tracing on: its stack opens and closes the SERVER spans."""
    table = RouteTable([(RouteMatcher(Match()), RouteStack(route, "batch", (), service))])
    return ListenerStack("main", table, (), asyncio.get_running_loop(), RequestSpans(tracing))


async def serve(listener: ListenerStack, request: Request) -> Response:
    answered: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
    listener(request, answered.set_result)
    return await answered


def submit_to(listener: ListenerStack, call: Call) -> asyncio.Task[Response]:
    return asyncio.get_running_loop().create_task(serve(listener, call.request))


@pytest.mark.parametrize("value", [
    b"", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331", b"ff-" + _traceparent()[3:],
    b"00-00000000000000000000000000000000-b7ad6b7169203331-01",
    b"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
    b"00-0af7651916cd43dd8448eb211c8031zz-b7ad6b7169203331-01", _traceparent() + b"-extra",
])
def test_invalid_traceparents_are_ignored(value: bytes) -> None:
    assert parse_traceparent(value) is None


def test_traceparent_round_trip() -> None:
    context = parse_traceparent(_traceparent("01"))
    assert context is not None and context.trace_flags.sampled and context.is_remote
    assert format_traceparent(context) == _traceparent("01")
    assert parse_traceparent(b"01-" + _traceparent()[3:] + b"-future") is not None  # a later version may add fields


async def test_a_server_span_continues_the_callers_trace_and_rewrites_the_header() -> None:
    tracing, exporter = _tracing()
    seen: list[bytes | None] = []

    async def inner(call: Call) -> Response:
        seen.append(call.request.header(b"traceparent"))
        response = Response(201, [(b"x-meshbatch-batch-size", b"3")])
        response.upstream = "10.0.0.1:80"
        return response

    req = Request(b"POST", b"/orders", [(b"traceparent", _traceparent())], b"{}", host=b"service", received_at=1.0)
    response = await serve(traced(inner, tracing), req)
    assert response.status == 201
    (span,) = exporter.get_finished_spans()
    assert span.kind == SpanKind.SERVER and span.name == "POST orders"
    assert span.parent is not None and format(span.parent.span_id, "016x") == CALLER_SPAN
    assert format(span.context.trace_id, "032x") == CALLER
    assert seen == [format_traceparent(span.context)]  # what goes upstream names this span
    assert span.attributes is not None
    assert span.attributes["http.response.status_code"] == 201
    assert span.attributes["meshbatch.batch.size"] == 3
    assert span.attributes["meshbatch.upstream"] == "10.0.0.1:80"


async def test_a_local_error_marks_the_span() -> None:
    tracing, exporter = _tracing()

    async def inner(call: Call) -> Response:
        raise GatewayTimeout("upstream_timeout")

    answer = await serve(traced(inner, tracing), Request(b"GET", b"/", []))
    assert answer.status == 504
    (span,) = exporter.get_finished_spans()
    assert span.parent is None  # no traceparent: a new trace
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes is not None and span.attributes["meshbatch.response_flags"] == "UT"


async def test_a_batch_span_links_every_member_and_goes_upstream() -> None:
    tracing, exporter = _tracing()
    handler, upstream, _ = make_handler(max_in_flight=1)
    handler.dispatcher.tracing = BatchSpans(tracing)
    listener = traced(handler, tracing)
    first = submit_to(listener, request({"n": 0}, [(b"traceparent", _traceparent())]))
    await settle()
    rest = [submit_to(listener, request({"n": i})) for i in (1, 2)]
    await settle()
    upstream.calls[0].echo()
    await settle()
    upstream.calls[1].echo()
    responses = [await task for task in (first, *rest)]
    assert [r.status for r in responses] == [200, 200, 200]
    servers = _by_kind(exporter.get_finished_spans(), SpanKind.SERVER)
    batches = _by_kind(exporter.get_finished_spans(), SpanKind.CLIENT)
    assert len(servers) == 3 and len(batches) == 2
    second = batches[1]
    assert second.parent is None and second.attributes is not None
    assert second.attributes["meshbatch.batch.size"] == 2
    linked = {link.context.span_id for link in second.links}
    members = {s.context.span_id for s in servers if s.attributes and s.attributes.get("meshbatch.batch.size") == 2}
    assert linked == members and len(linked) == 2
    assert header(Response(0, upstream.calls[1].headers), b"traceparent") == format_traceparent(second.context)
    first_server = next(s for s in servers if s.parent is not None)
    assert format(first_server.context.trace_id, "032x") == CALLER


async def test_a_batch_of_unsampled_members_is_not_recorded() -> None:
    tracing, exporter = _tracing(sample=0.0)
    handler, upstream, _ = make_handler(max_in_flight=1)
    handler.dispatcher.tracing = BatchSpans(tracing)
    listener = traced(handler, tracing)
    task = submit_to(listener, request({"n": 0}, [(b"traceparent", _traceparent("00"))]))
    await settle()
    assert header(Response(0, upstream.calls[0].headers), b"traceparent") is not None  # still propagated
    upstream.calls[0].echo()
    assert (await task).status == 200
    assert exporter.get_finished_spans() == ()
    sampled = submit_to(listener, request({"n": 1}, [(b"traceparent", _traceparent("01"))]))
    await settle()
    upstream.calls[1].echo()
    await sampled
    kinds = sorted(s.kind.name for s in exporter.get_finished_spans())
    assert kinds == ["CLIENT", "SERVER"]  # the caller's sampled decision wins over sample: 0


async def test_a_failed_batch_call_is_an_error_span_and_is_recorded() -> None:
    from meshbatch.telemetry.recorder import BatchRecorder

    tracing, exporter = _tracing()
    handler, upstream, clock = make_handler(max_in_flight=1)
    handler.dispatcher.tracing = BatchSpans(tracing)
    handler.dispatcher.recorder = BatchRecorder(100)
    task = submit(handler, request({"n": 0}))
    await settle()
    clock.advance(0.25)
    upstream.calls[0].reply(503, b"{}")
    assert (await task).status == 502
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code == StatusCode.ERROR
    (record,) = handler.dispatcher.recorder.export()
    assert record["ok"] is False and record["done"] == pytest.approx(float(record["sent"]) + 0.25)  # type: ignore[arg-type]
