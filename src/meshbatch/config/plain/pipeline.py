"""The preprocessing pipeline in its run-time form: one stage per step (meshbatch.config.model.pipeline)."""

from __future__ import annotations

from typing import Any, Literal

from msgspec import field

from meshbatch.config.plain.base import Plain

Encoding = Literal["gzip", "deflate", "zstd", "br"]
ENCODINGS: tuple[Encoding, ...] = ("gzip", "deflate", "zstd", "br")
STAGES = ("decompress", "decode", "validate", "filter", "transform", "compress")


class Decompress(Plain, frozen=True, kw_only=True):
    encodings: list[Encoding] = field(default_factory=lambda: list(ENCODINGS))
    max_bytes: int = 8388608


class Decode(Plain, frozen=True, kw_only=True):
    format: Literal["auto", "json", "ndjson", "msgpack"] = "auto"
    split_arrays: bool = False
    max_events: int = 10000
    max_depth: int = 64


class Validate(Plain, frozen=True, kw_only=True):
    schema_: str | dict[str, Any] = field(name="schema")
    on_invalid: Literal["reject", "dead_letter"] = "reject"


class Filter(Plain, frozen=True, kw_only=True):
    expr: str
    on_error: Literal["drop", "reject"] = "drop"


class Transform(Plain, frozen=True, kw_only=True):
    rename: dict[str, str] = {}
    project: list[str] | None = None
    drop: list[str] = []
    add: dict[str, Any] = {}
    stamp: str | None = None
    stamp_format: Literal["rfc3339", "unix", "unix_ms"] = "rfc3339"


class Compress(Plain, frozen=True, kw_only=True):
    encoding: Literal["gzip", "zstd"] = "gzip"
    min_bytes: int = 1024
    level: int | None = None


class PipelineLimits(Plain, frozen=True, kw_only=True):
    """How much one request may cost the pipeline, and where it runs (`route.pipeline_limits`).

    A request whose body is at most `inline_max_bytes` and not compressed runs on the event loop (it is cheaper
    there than the round trip to a worker); so does, for a pipeline that only decodes JSON or NDJSON, a body of
    at most `inline_decode_max_bytes` holding at most `inline_decode_max_values` values (its commas, brackets,
    braces and newlines, counted at C speed: what the decoder's work grows with); any other runs in one of the
    route's `workers` processes, so no request can hold the event loop. A run that is still going after
    `inline_slice_ms` on the loop stops and moves to a worker. `workers: 0` keeps everything on the loop (the CPU
    budget is then checked between events only, not enforced preemptively)."""

    max_cpu_ms: int = 1000
    inline_max_bytes: int = 512
    inline_decode_max_bytes: int = 65536
    inline_decode_max_values: int = 2048
    inline_slice_ms: int = 2
    workers: int = 1
    max_queue: int = 64
    max_queue_ms: int = 2000


class Step(Plain, frozen=True, kw_only=True):
    """One pipeline stage: a mapping with exactly one key, the stage's name (`- filter: {expr: ...}`)."""

    decompress: Decompress | None = None
    decode: Decode | None = None
    validate_: Validate | None = field(name="validate", default=None)
    filter: Filter | None = None
    transform: Transform | None = None
    compress: Compress | None = None

    def options(self, name: str) -> Plain | None:
        value: Plain | None = getattr(self, "validate_" if name == "validate" else name)
        return value

    @property
    def stage(self) -> str:
        return next(name for name in STAGES if self.options(name) is not None)
