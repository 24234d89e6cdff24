"""The preprocessing pipeline (meshbatch.pipeline): one key per step names the stage."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from meshbatch.config.model.base import Model, NonNegInt, PositiveInt, ReadPath

Encoding = Literal["gzip", "deflate", "zstd", "br"]
ENCODINGS: tuple[Encoding, ...] = ("gzip", "deflate", "zstd", "br")


class Decompress(Model):
    encodings: list[Encoding] = list(ENCODINGS)
    max_bytes: PositiveInt = 8_388_608  # decompressed size cap (a zip bomb is a 413)


class Decode(Model):
    format: Literal["auto", "json", "ndjson", "msgpack"] = "auto"
    split_arrays: bool = False  # a top-level array is several events
    max_events: Annotated[int, Field(ge=1, le=1_000_000)] = 10_000
    max_depth: Annotated[int, Field(ge=1, le=250)] = 64  # nesting of arrays/objects in one event (400 too_deep)


class Validate(Model):
    schema_: ReadPath | dict[str, Any] = Field(alias="schema")  # a JSON Schema file path, or the schema inline
    on_invalid: Literal["reject", "dead_letter"] = "reject"


class Filter(Model):
    expr: Annotated[str, Field(min_length=1, max_length=4096)]
    on_error: Literal["drop", "reject"] = "drop"

    @model_validator(mode="before")
    @classmethod
    def _short(cls, value: Any) -> Any:
        return {"expr": value} if isinstance(value, str) else value


class Transform(Model):
    rename: dict[str, str] = {}
    project: list[str] | None = None
    drop: list[str] = []
    add: dict[str, Any] = {}
    stamp: str | None = None
    stamp_format: Literal["rfc3339", "unix", "unix_ms"] = "rfc3339"


class Compress(Model):
    encoding: Literal["gzip", "zstd"] = "gzip"
    min_bytes: NonNegInt = 1024
    level: Annotated[int, Field(ge=1, le=19)] | None = None


STAGES = ("decompress", "decode", "validate", "filter", "transform", "compress")


class PipelineLimits(Model):
    """How much one request may cost the pipeline, and where it runs (`route.pipeline_limits`).

    A request whose body is at most `inline_max_bytes` and not compressed runs on the event loop (it is cheaper
    there than the round trip to a worker); so does, for a pipeline that only decodes JSON or NDJSON, a body of
    at most `inline_decode_max_bytes` holding at most `inline_decode_max_values` values (its commas, brackets,
    braces and newlines, counted at C speed: what the decoder's work grows with); any other runs in one of the
    route's `workers` processes, so no request can hold the event loop. A run that is still going after
    `inline_slice_ms` on the loop stops and moves to a worker. `workers: 0` keeps everything on the loop (the CPU
    budget is then checked between events only, not enforced preemptively)."""

    max_cpu_ms: Annotated[int, Field(ge=1, le=600_000)] = 1000  # CPU per request; beyond: 413 pipeline_cpu_exceeded
    inline_max_bytes: Annotated[int, Field(ge=0, le=1_048_576)] = 512
    inline_decode_max_bytes: Annotated[int, Field(ge=0, le=1_048_576)] = 65_536  # decode-only pipelines
    inline_decode_max_values: Annotated[int, Field(ge=0, le=1_000_000)] = 2048
    inline_slice_ms: Annotated[int, Field(ge=1, le=1000)] = 2
    workers: Annotated[int, Field(ge=0, le=64)] = 1
    max_queue: Annotated[int, Field(ge=0, le=100_000)] = 64  # requests waiting for a worker; beyond: 503
    max_queue_ms: Annotated[int, Field(ge=1, le=600_000)] = 2000  # longest wait for a worker; beyond: 503


class Step(Model):
    """One pipeline stage: a mapping with exactly one key, the stage's name (`- filter: {expr: ...}`)."""

    decompress: Decompress | None = None
    decode: Decode | None = None
    validate_: Validate | None = Field(None, alias="validate")
    filter: Filter | None = None
    transform: Transform | None = None
    compress: Compress | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare(cls, value: Any) -> Any:  # `- decompress:` (no options) means the defaults
        if isinstance(value, dict):
            return {k: ({} if v is None and k in STAGES else v) for k, v in value.items()}
        if isinstance(value, str) and value in STAGES:
            return {value: {}}
        return value

    @model_validator(mode="after")
    def _one(self) -> Step:
        named = [name for name in STAGES if self.options(name) is not None]
        if len(named) != 1:
            raise ValueError(f"a step names exactly one stage of {', '.join(STAGES)}"
                             + (f" (got {', '.join(named)})" if named else ""))
        return self

    def options(self, name: str) -> Model | None:
        value: Model | None = getattr(self, "validate_" if name == "validate" else name)
        return value

    @property
    def stage(self) -> str:
        return next(name for name in STAGES if self.options(name) is not None)
