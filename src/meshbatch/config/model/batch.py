"""A route's `batch:` block (meshbatch.batching)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Discriminator, Field, Tag, ValidationInfo, field_validator, model_validator

from meshbatch.config.model.base import Model, ReadPath, UrlPath

_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def idempotency_scope_problem(spec: str) -> str | None:
    """What is wrong with an `idempotency_scope` value (meshbatch.security.scope), or None."""
    kind, _, name = spec.partition(":")
    if spec in ("principal", "global") or (kind == "header" and name and set(name) <= _TOKEN):
        return None
    return "must be 'principal', 'header:NAME' or 'global'"


def _scope(value: str) -> str:
    problem = idempotency_scope_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


IdempotencyScope = Annotated[str, AfterValidator(_scope)]


class Adaptive(Model):
    target_p99_ms: Annotated[float, Field(gt=0, le=600_000)]
    window: Annotated[int, Field(ge=8, le=10_000)] = 256


# Statuses with which an upstream blames the request itself: a batch refused with one of them is split to find
# the items at fault (meshbatch.batching.isolate). 5xx and 429 blame the upstream's state, not the request: the
# retry policy handles those.
BLAME_STATUSES = (400, 413, 415, 422)


class Isolate(Model):
    """`batch.isolate`: what happens when the upstream refuses a whole batch for something in its request."""

    mode: Literal["bisect", "off"] = "bisect"
    statuses: list[Annotated[int, Field(ge=400, le=499)]] = list(BLAME_STATUSES)
    # Extra upstream calls a batch may make to isolate its items at fault; None: 4 x ceil(log2(batch size)),
    # enough to isolate two of them.
    max_calls: Annotated[int, Field(ge=0, le=100_000)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _short(cls, value: Any) -> Any:  # `isolate: off` / `isolate: bisect`
        if isinstance(value, bool | str):
            value = {"mode": value}
        if isinstance(value, dict) and isinstance(value.get("mode"), bool):  # YAML reads a bare `off` as false
            value = {**value, "mode": "bisect" if value["mode"] else "off"}
        return value

    @field_validator("statuses")
    @classmethod
    def _blame(cls, value: list[int]) -> list[int]:
        for status in value:
            if status in (408, 429):
                raise ValueError(f"{status} says the upstream is busy or slow, not that the request is bad; "
                                 "the retry policy handles it")
        return value


class InFlightGradient(Model):
    """`batch.max_in_flight: {auto: {...}}`: the bounds of the batches in flight and the settings of the gradient
    controller that moves between them (meshbatch.layers.concurrency, as `adaptive_concurrency` uses it)."""

    min: Annotated[int, Field(ge=1, le=10_000)] = 1
    max: Annotated[int, Field(ge=1, le=10_000)] = 16
    sample_window_ms: Annotated[int, Field(ge=10, le=60_000)] = 250
    sample_percentile: Annotated[float, Field(gt=0, le=100)] = 50
    buffer_percent: Annotated[float, Field(ge=0, le=100)] = 25
    min_rtt_interval_ms: Annotated[int, Field(ge=1, le=86_400_000)] = 30_000
    min_rtt_batches: Annotated[int, Field(ge=1, le=10_000)] = 20
    jitter_percent: Annotated[float, Field(ge=0, le=100)] = 15

    @model_validator(mode="after")
    def _bounds(self) -> InFlightGradient:
        if self.min > self.max:
            raise ValueError("min must be <= max")
        return self


class AutoInFlight(Model):
    """`max_in_flight: auto` (the defaults) or `max_in_flight: {auto: {min, max, ...}}`."""

    auto: InFlightGradient = InFlightGradient()

    @model_validator(mode="before")
    @classmethod
    def _short(cls, value: Any) -> Any:
        if value == "auto":
            return {"auto": {}}
        if isinstance(value, dict) and value.get("auto") in (None, True):
            return {**value, "auto": {}}
        if isinstance(value, str):
            raise ValueError("must be a number of batches, 'auto' or {auto: {min, max}}")
        return value


def _in_flight_kind(value: Any) -> str:
    return "AutoInFlight" if isinstance(value, dict | str | AutoInFlight) else "int"


# A fixed number of batches in flight, or `auto`: moved between bounds by the upstream's latency.
InFlight = Annotated[Annotated[Annotated[int, Field(ge=1, le=10_000)], Tag("int")]
                     | Annotated[AutoInFlight, Tag("AutoInFlight")], Discriminator(_in_flight_kind)]


# The batch method of the envelope mode (src/meshbatch/grpc/meshbatch_batch.proto), which the consumer SDK serves.
ENVELOPE_METHOD = "/meshbatch.batch.v1.Batch/Process"
_METHOD = re.compile(r"/[A-Za-z_][A-Za-z0-9_.]*\.[A-Za-z_][A-Za-z0-9_]*/[A-Za-z_][A-Za-z0-9_]*")
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _method(value: str) -> str:
    if not _METHOD.fullmatch(value):
        raise ValueError("must be a gRPC method path, /package.Service/Method")
    return value


def _field(value: str) -> str:
    if not _FIELD.fullmatch(value):
        raise ValueError("must be a protobuf field name (letters, digits, _)")
    return value


def _json_field(value: str) -> str:
    if not _FIELD.fullmatch(value):
        raise ValueError("must be a field name (letters, digits, _)")
    return value


GrpcMethod = Annotated[str, AfterValidator(_method)]
FieldName = Annotated[str, AfterValidator(_field)]
_DESCRIPTOR_KEYS = ("descriptor_set", "items_field", "results_field")


class GrpcBatch(Model):
    """`batch.grpc`: how gRPC unary calls are batched (meshbatch.batching.codecs.grpc). With `descriptor_set`,
    into the service's own batch method (AIP-231 BatchGet); without, in meshbatch's envelope."""

    descriptor_set: Annotated[ReadPath, Field(min_length=1)] | None = None  # a FileDescriptorSet (protoc -o FILE)
    batch_method: GrpcMethod = ENVELOPE_METHOD
    items_field: FieldName | None = None  # repeated: the callers' request messages
    results_field: FieldName | None = None  # repeated: one result each
    statuses_field: FieldName | None = None  # repeated google.rpc.Status: one per item (optional)
    max_message_bytes: Annotated[int, Field(ge=1, le=2**31 - 1)] = 4 * 1024 * 1024

    @model_validator(mode="after")
    def _mode(self) -> GrpcBatch:
        given = [key for key in _DESCRIPTOR_KEYS if getattr(self, key) is not None]
        if given and len(given) < len(_DESCRIPTOR_KEYS):
            absent = [key for key in _DESCRIPTOR_KEYS if key not in given]
            raise ValueError(f"a batch method from descriptors needs {', '.join(_DESCRIPTOR_KEYS)}: "
                             f"{', '.join(absent)} missing (or leave them all out for the envelope)")
        if not given and self.statuses_field is not None:
            raise ValueError("statuses_field needs descriptor_set (the envelope carries a status per item)")
        if given and self.batch_method == ENVELOPE_METHOD:
            raise ValueError("batch_method: name your service's batch method, /package.Service/Method")
        return self

    @property
    def envelope(self) -> bool:
        return self.descriptor_set is None


class Batch(Model):
    max_items: Annotated[int, Field(ge=1, le=100_000)] = 64
    max_wait_ms: Annotated[float, Field(ge=0, le=600_000)] = 5
    min_wait_ms: Annotated[float, Field(ge=0, le=600_000)] = 0
    max_bytes: Annotated[int, Field(ge=1)] = 1_048_576
    codec: str = "json-array"
    upstream_path: UrlPath = "/batch"
    upstream_method: Literal["POST", "PUT"] = "POST"
    max_in_flight: InFlight = 4  # or `auto` / {auto: {min, max, ...}} (meshbatch.batching.slots)
    max_queue: Annotated[int, Field(ge=1)] = 10_000
    key: list[str] = []
    dedup: bool = True
    dedup_window_ms: Annotated[float, Field(ge=0, le=86_400_000)] = 0
    dedup_max_keys: Annotated[int, Field(ge=1, le=10_000_000)] = 10_000
    idempotency_scope: IdempotencyScope = "principal"  # whose keys dedup and replay share (security/scope.py)
    adaptive: Adaptive | None = None
    isolate: Isolate = Isolate()
    grpc: GrpcBatch | None = None  # with codec: grpc (filled in with its defaults when absent)
    # Answer each caller as its line of a streamed (chunked) ndjson answer arrives (meshbatch.batching.streaming)
    stream_results: bool = False
    # With stream_results: lines name their item's position in the batch (0-based) in this field, in any order
    stream_index_field: Annotated[str, AfterValidator(_json_field)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _grpc_defaults(cls, value: Any) -> Any:
        """`codec: grpc` without `grpc:` is the envelope; its batches go to the batch method."""
        if not isinstance(value, dict) or value.get("codec") != "grpc":
            return value
        grpc = value.get("grpc")
        if grpc is None:
            grpc = {}
            value = {**value, "grpc": grpc}
        method = grpc.get("batch_method", ENVELOPE_METHOD) if isinstance(grpc, dict) else None
        if isinstance(method, str) and method.startswith("/") and "upstream_path" not in value:
            value = {**value, "upstream_path": method}
        return value

    @property
    def in_flight_cap(self) -> int:
        """The most batches in flight: the fixed number, or the upper bound of `auto`."""
        slots = self.max_in_flight
        return slots if isinstance(slots, int) else slots.auto.max

    @field_validator("key")
    @classmethod
    def _keys(cls, value: list[str]) -> list[str]:
        for part in value:
            kind, _, name = part.partition(":")
            if kind not in ("header", "query") or not name:
                raise ValueError(f"{part!r}: a key part is 'header:NAME' or 'query:NAME'")
        return value

    @field_validator("stream_results")
    @classmethod
    def _streams(cls, value: bool, info: ValidationInfo) -> bool:
        codec = info.data.get("codec")
        if value and codec is not None and codec != "ndjson":
            raise ValueError(f"results stream one per line with codec: ndjson, not codec: {codec}")
        return value

    @field_validator("stream_index_field")
    @classmethod
    def _index(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("stream_results") is False:
            raise ValueError("lines are matched by index only when they stream: set stream_results: true")
        return value

    @model_validator(mode="after")
    def _waits(self) -> Batch:
        if self.min_wait_ms > self.max_wait_ms:
            raise ValueError("min_wait_ms must be <= max_wait_ms")
        if self.grpc is not None:
            if self.codec != "grpc":
                raise ValueError(f"grpc: is the setting of codec: grpc, not of codec: {self.codec}")
            if self.upstream_path != self.grpc.batch_method:
                raise ValueError("a gRPC batch goes to grpc.batch_method: leave upstream_path out")
            if self.upstream_method != "POST":
                raise ValueError("a gRPC batch is a POST: leave upstream_method out")
        if self.dedup_window_ms and not self.dedup:
            raise ValueError("dedup_window_ms keeps answers for dedup: set dedup: true, or leave dedup_window_ms 0")
        return self
