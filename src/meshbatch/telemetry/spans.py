"""The spans meshbatch makes, and W3C trace-context propagation through the proxy and its batches.

- `RequestSpans`: a SERVER span per caller request, opened by the listener's stack and started at the time the
  request was received, child of the caller's `traceparent` (W3C trace context) when valid. The request's `traceparent`
  header is then rewritten to this span, so whatever goes upstream for this request carries it: the forwarded
  request of a plain route, each envelope item of a batch (the envelope codec forwards item headers).
- `BatchSpans` makes the CLIENT span of an upstream batch call: the root of its own trace, with one span link per
  member item (to that caller's SERVER span; OpenTelemetry's way to relate one operation to many traces), and
  its own `traceparent` on the batch request. A batch split to isolate an item the upstream refused sends its
  parts as calls of their own: each a CLIENT span, child of the batch's, with its own `traceparent`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from opentelemetry.context import Context
from opentelemetry.trace import Link, NonRecordingSpan, Span, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace import set_span_in_context as _in_context
from opentelemetry.trace.span import TraceState

from meshbatch.clock import LoopClock
from meshbatch.errors import ProxyError
from meshbatch.http.message import Headers, Request, Response
from meshbatch.telemetry.tracing import Tracing

if TYPE_CHECKING:
    from collections.abc import Sequence

    from meshbatch.batching.batch import Batch
    from meshbatch.ingest.record import Record

TRACEPARENT = b"traceparent"
_HEX = frozenset(b"0123456789abcdef")
_BATCH_HEADERS = {b"x-meshbatch-batch-id": "meshbatch.batch.id", b"x-meshbatch-batch-size": "meshbatch.batch.size",
                  b"x-meshbatch-queue-ms": "meshbatch.batch.queue_ms", b"x-meshbatch-flush": "meshbatch.batch.flush",
                  b"idempotent-replayed": "meshbatch.replayed"}


def parse_traceparent(value: bytes | None, tracestate: bytes | None = None) -> SpanContext | None:
    """A remote span context from a W3C `traceparent` value (version 00 layout), or None if it is not valid."""
    if value is None:
        return None
    value = value.strip().lower()
    parts = value.split(b"-")
    if len(parts) < 4 or len(parts[0]) != 2 or len(parts[1]) != 32 or len(parts[2]) != 16 or len(parts[3]) != 2:
        return None
    if parts[0] == b"ff" or (parts[0] == b"00" and len(parts) != 4):
        return None
    if not all(set(p) <= _HEX for p in parts[:4]):
        return None
    trace_id, span_id = int(parts[1], 16), int(parts[2], 16)
    if not trace_id or not span_id:
        return None
    state = TraceState.from_header([tracestate.decode("latin-1")]) if tracestate else None
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(int(parts[3], 16) & 0x01),
                       trace_state=state)


def format_traceparent(context: SpanContext) -> bytes:
    return b"00-%032x-%016x-%02x" % (context.trace_id, context.span_id, int(context.trace_flags) & 0x01)


def _header(headers: Headers, name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


def set_traceparent(headers: Headers, context: SpanContext) -> None:
    """Replace the `traceparent` header(s) with `context` (appended when absent)."""
    value = format_traceparent(context)
    kept = [(k, v) for k, v in headers if k != TRACEPARENT]
    kept.append((TRACEPARENT, value))
    headers[:] = kept


def _wall_ns(received_at: float) -> int | None:
    """The wall-clock time (ns) of a timestamp on the loop's clock (clock.py), for span start times."""
    if not received_at:
        return None
    return time.time_ns() - int(max(0.0, LoopClock().now() - received_at) * 1e9)


def _attribute(key: str, text: str) -> str | int | float:
    try:
        if key == "meshbatch.batch.size":
            return int(text)
        if key == "meshbatch.batch.queue_ms":
            return float(text)
    except ValueError:
        pass
    return text


class RequestSpans:
    """A SERVER span per caller request (the listener's stack opens it when it gets the request and closes it with
    the answer, whichever path served it)."""

    __slots__ = ("tracing",)

    def __init__(self, tracing: Tracing) -> None:
        self.tracing = tracing

    @staticmethod
    def abandon(span: Span) -> None:
        """The caller went away before its answer."""
        span.set_attribute("meshbatch.cancelled", True)
        span.set_status(Status(StatusCode.ERROR, "CancelledError"))
        span.end()

    def open(self, request: Request) -> Span:
        headers = request.headers
        parent = parse_traceparent(_header(headers, TRACEPARENT), _header(headers, b"tracestate"))
        context = _in_context(NonRecordingSpan(parent), Context()) if parent is not None else Context()
        method = request.method.decode("latin-1")
        span = self.tracing.tracer.start_span(method, context=context, kind=SpanKind.SERVER,
                                              start_time=_wall_ns(request.received_at), attributes={
                                                  "http.request.method": method,
                                                  "url.path": request.path.decode("latin-1"),
                                                  "server.address": request.host.decode("latin-1"),
                                                  "client.address": request.client,
                                                  "meshbatch.request_id": request.request_id.decode("latin-1"),
                                              })
        set_traceparent(headers, span.get_span_context())
        return span

    @staticmethod
    def close(span: Span, request: Request, response: Response | None, error: ProxyError | None = None) -> None:
        if request.route:
            span.update_name(f"{request.method.decode('latin-1')} {request.route}")
            span.set_attribute("meshbatch.route", request.route)
        if response is not None:
            status, flag, reason, upstream = response.status, response.flag, response.reason, response.upstream
            for name, value in response.headers:
                key = _BATCH_HEADERS.get(name)
                if key is not None:
                    span.set_attribute(key, _attribute(key, value.decode("latin-1")))
        else:
            assert error is not None
            status, flag, reason, upstream = error.status, error.flag, error.reason, ""
        span.set_attribute("http.response.status_code", status)
        span.set_attribute("meshbatch.response_flags", flag)
        if reason:
            span.set_attribute("meshbatch.reason", reason)
        if upstream:
            span.set_attribute("meshbatch.upstream", upstream)
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR, reason or str(status)))
        span.end()


class BatchSpans:
    """What a batcher does with tracing on: item trace headers, and a span per upstream batch call."""

    __slots__ = ("tracing",)

    def __init__(self, tracing: Tracing) -> None:
        self.tracing = tracing

    @staticmethod
    def item_headers(request: Request) -> Headers:
        """The headers an item keeps for codecs that do not forward headers: its traceparent only."""
        value = _header(request.headers, TRACEPARENT)
        return [(TRACEPARENT, value)] if value is not None else []

    def start(self, route: str, batch: Batch, headers: Headers) -> Span:
        """The batch call's span (links to every member); its traceparent is appended to `headers`."""
        links: list[Link] = []
        for index, item in enumerate(batch.items):
            member = parse_traceparent(_header(item.headers, TRACEPARENT))
            if member is not None:
                links.append(Link(member, {"meshbatch.item.index": index}))
            for waiter in item.waiters:  # dedup joiners: their own SERVER spans, linked to the item they share
                joiner = parse_traceparent(waiter.trace) if waiter.trace is not None else None
                if joiner is not None:
                    links.append(Link(joiner, {"meshbatch.item.index": index, "meshbatch.dedup": True}))
        span = self.tracing.tracer.start_span(f"batch {route}", context=Context(), kind=SpanKind.CLIENT, links=links,
                                              attributes={
                                                  "meshbatch.route": route,
                                                  "meshbatch.batch.id": batch.id,
                                                  "meshbatch.batch.size": len(batch.items),
                                                  "meshbatch.batch.flush": batch.reason,
                                                  "meshbatch.batch.callers": batch.callers(),
                                              })
        headers.append((TRACEPARENT, format_traceparent(span.get_span_context())))
        return span

    def start_part(self, route: str, parent: Span, size: int, headers: Headers) -> tuple[Span, Headers]:
        """The span of a call carrying part of a split batch (a child of the batch's span), and a copy of the
        batch's `headers` with its traceparent."""
        span = self.tracing.tracer.start_span(f"batch {route} part", context=_in_context(parent, Context()),
                                              kind=SpanKind.CLIENT, attributes={
                                                  "meshbatch.route": route, "meshbatch.batch.size": size})
        part = list(headers)
        set_traceparent(part, span.get_span_context())
        return span, part

    def start_delivery(self, route: str, records: Sequence[Record]) -> Span:
        """An ingest delivery's span: the root of its own trace, linked to the span of each event's request."""
        links: list[Link] = []
        seen: set[bytes] = set()
        for index, record in enumerate(records):
            trace = record.trace
            if trace is None or trace in seen:  # one request's events (a pipeline's split) link once
                continue
            seen.add(trace)
            member = parse_traceparent(trace)
            if member is not None:
                links.append(Link(member, {"meshbatch.event.index": index}))
        return self.tracing.tracer.start_span(f"deliver {route}", context=Context(), kind=SpanKind.CLIENT,
                                              links=links, attributes={"meshbatch.route": route,
                                                                       "meshbatch.ingest.events": len(records)})

    @staticmethod
    def finish_delivery(span: Span, stored: int, failed: int, error: str) -> None:
        span.set_attribute("meshbatch.ingest.stored", stored)
        span.set_attribute("meshbatch.ingest.failed", failed)
        if error:
            span.set_attribute("meshbatch.reason", error)
            span.set_status(Status(StatusCode.ERROR, error))
        elif failed:
            span.set_status(Status(StatusCode.ERROR, f"{failed} event(s) failed"))
        span.end()

    @staticmethod
    def link_joiner(span: Span, trace: bytes | None, index: int) -> None:
        """A dedup joiner of an item already in flight: linked to the batch span while it is open."""
        joiner = parse_traceparent(trace)
        if joiner is not None:
            span.add_link(joiner, {"meshbatch.item.index": index, "meshbatch.dedup": True})

    @staticmethod
    def finish(span: Span, batch: Batch, status: int, error: ProxyError | None) -> None:
        if batch.upstream:
            span.set_attribute("server.address", batch.upstream)
        if status:
            span.set_attribute("http.response.status_code", status)
        if error is not None:
            span.set_attribute("meshbatch.reason", error.reason)
            span.set_status(Status(StatusCode.ERROR, error.reason))
        elif status >= 400 or not status:
            span.set_status(Status(StatusCode.ERROR, f"upstream status {status}"))
        span.end()


__all__ = ["BatchSpans", "RequestSpans", "format_traceparent", "parse_traceparent", "set_traceparent"]
