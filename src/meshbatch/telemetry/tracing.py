"""OpenTelemetry tracing: the provider, its sampler and exporters, built from the `tracing` config key.

This module imports the OpenTelemetry SDK; nothing imports it unless `tracing` is configured, so a proxy without
tracing neither loads the SDK nor pays a per-request cost (the listener's handler is not wrapped, batchers see
`tracing is None`).

Spans (see `telemetry/spans.py`): a SERVER span per caller request, child of the caller's W3C `traceparent`
when it sent one; a CLIENT span per upstream batch call, the root of its own trace, with a span link to every
member request's span. Sampling (`LinkedSampler`): a span with a parent follows the parent's decision; a new
trace is recorded with probability `sample`; a batch span is recorded when any of its members is.
Export is off the event loop: the SDK's `BatchSpanProcessor` queues finished spans (bounded, `max_queue`) and a
background thread exports them every `export_interval_ms` over OTLP/HTTP, or as one JSON line per span to
stdout (`console`) or a file (`file`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import IO

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind, get_current_span
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from meshbatch import __version__
from meshbatch.config import plain


class LinkedSampler(Sampler):
    """Parent-based with a ratio for new traces; a root span with links (a batch) follows its members."""

    def __init__(self, ratio: float) -> None:
        self.ratio = ratio
        self._parent_based = ParentBased(TraceIdRatioBased(ratio))

    def should_sample(self, parent_context: Context | None, trace_id: int, name: str, kind: SpanKind | None = None,
                      attributes: Attributes = None, links: Sequence[Link] | None = None,
                      trace_state: TraceState | None = None) -> SamplingResult:
        parent = get_current_span(parent_context).get_span_context()
        if not parent.is_valid and links:
            decision = Decision.RECORD_AND_SAMPLE if any(link.context.trace_flags.sampled for link in links) \
                else Decision.DROP
            return SamplingResult(decision, attributes if decision == Decision.RECORD_AND_SAMPLE else None,
                                  trace_state)
        return self._parent_based.should_sample(parent_context, trace_id, name, kind, attributes, links,
                                                trace_state)

    def get_description(self) -> str:
        return f"LinkedSampler{{ratio={self.ratio}}}"


class JsonLinesExporter(ConsoleSpanExporter):
    """One JSON document per span and line, to stdout or a file (closed on shutdown)."""

    def __init__(self, out: IO[str], owns: bool) -> None:
        super().__init__(out=out, formatter=lambda span: span.to_json(indent=None) + os.linesep)
        self._stream = out
        self._owns = owns

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            return super().export(spans)
        except (OSError, ValueError):
            return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        if self._owns and not self._stream.closed:
            self._stream.close()


def make_exporter(config: plain.Tracing) -> SpanExporter:
    if config.exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=config.endpoint, headers=dict(config.headers),
                                timeout=config.timeout_ms / 1000)
    if config.exporter == "file":
        assert config.path is not None  # the config checks require it
        return JsonLinesExporter(open(config.path, "a", encoding="utf-8"), owns=True)
    import sys

    return JsonLinesExporter(sys.stdout, owns=False)


class Tracing:
    """The process's tracer: built once per `tracing` config, shut down (spans flushed) on drain or change."""

    def __init__(self, config: plain.Tracing, exporter: SpanExporter | None = None, *,
                 synchronous: bool = False) -> None:
        self.config = config
        resource = Resource.create({"service.name": config.service_name, "service.version": __version__})
        self.provider = TracerProvider(sampler=LinkedSampler(config.sample), resource=resource,
                                       span_limits=SpanLimits(max_links=config.max_links), shutdown_on_exit=False)
        exporter = exporter if exporter is not None else make_exporter(config)
        if synchronous:  # tests: spans are exported as they end
            self.provider.add_span_processor(SimpleSpanProcessor(exporter))
        else:
            self.provider.add_span_processor(BatchSpanProcessor(
                exporter, max_queue_size=config.max_queue, schedule_delay_millis=config.export_interval_ms,
                max_export_batch_size=min(512, config.max_queue), export_timeout_millis=config.timeout_ms))
        self.tracer = self.provider.get_tracer("meshbatch", __version__)

    def flush(self, timeout_ms: int = 5_000) -> bool:
        return self.provider.force_flush(timeout_ms)

    def shutdown(self) -> None:
        """Export what is queued and stop the export thread (blocking: call it from a worker thread)."""
        self.provider.shutdown()


__all__ = ["JsonLinesExporter", "LinkedSampler", "Tracing", "make_exporter"]
