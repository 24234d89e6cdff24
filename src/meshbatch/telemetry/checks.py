"""Checks of meaning for the observability keys (`access_log`, `tracing`), each problem with its path."""

from __future__ import annotations

from collections.abc import Iterator

from meshbatch import extras
from meshbatch.config.load import Problem, register_check
from meshbatch.config.model import Config


def telemetry_problems(config: Config) -> Iterator[Problem]:
    tracing = config.tracing
    if tracing is not None:
        if extras.missing("otel"):
            yield Problem("tracing", f"tracing needs the 'otel' extra (OpenTelemetry): {extras.install_hint('otel')}")
        if tracing.exporter == "file" and not tracing.path:
            yield Problem("tracing.path", "is required for exporter 'file' (a file of one JSON span per line)")
        if tracing.exporter != "file" and tracing.path is not None:
            yield Problem("tracing.path", f"does not apply to exporter {tracing.exporter!r} (only to 'file')")
        if tracing.exporter != "otlp":
            for key in sorted({"endpoint", "headers"} & tracing.model_fields_set):
                yield Problem(f"tracing.{key}", f"does not apply to exporter {tracing.exporter!r} (only to 'otlp')")
    log = config.access_log
    if log is not None and log.path != "-" and log.path.endswith("/"):
        yield Problem("access_log.path", "must name a file (or '-' for stdout), not a directory")


@register_check
def telemetry(config: Config) -> Iterator[Problem]:
    yield from telemetry_problems(config)


__all__ = ["telemetry", "telemetry_problems"]
