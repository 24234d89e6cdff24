"""A route's `batch:` block (meshbatch.batching)."""

from __future__ import annotations

import re
from itertools import pairwise
from typing import Annotated, Any, Literal

import orjson
from pydantic import AfterValidator, Discriminator, Field, Tag, ValidationInfo, field_validator, model_validator

from meshbatch.config.model.adaptive import Adaptive, candidate_problem
from meshbatch.config.model.base import Model, ReadPath, UrlPath
from meshbatch.config.plain.batch import TOKEN_CHARS as _TOKEN
from meshbatch.config.plain.batch import idempotency_scope_problem


def _scope(value: str) -> str:
    problem = idempotency_scope_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


IdempotencyScope = Annotated[str, AfterValidator(_scope)]


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


def cost_spec_problem(spec: str) -> str | None:
    """What is wrong with a `batch.cost` value (meshbatch.batching.cost), or None."""
    kind, _, name = spec.partition(":")
    if spec == "bytes":
        return None
    if kind == "header" and name and set(name) <= _TOKEN:
        return None
    if kind == "json" and name and all(name.split(".")):
        return None
    return "must be 'bytes', 'header:NAME' or 'json:PATH' (a dotted path: json:inputs.0.tokens)"


def _cost(value: str) -> str:
    problem = cost_spec_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


CostSpec = Annotated[str, AfterValidator(_cost)]


class BucketBy(Model):
    """`batch.bucket_by`: items of similar cost share batches (meshbatch.batching.buckets)."""

    cost: CostSpec | None = None  # what an item costs; None: batch.cost
    boundaries: Annotated[list[Annotated[float, Field(gt=0, le=1e15)]], Field(min_length=1, max_length=64)]
    # how long a bucket's queue may be held at most (one number for every bucket, or one per bucket: as many as
    # boundaries + 1); None: the route's hold (min_wait_ms or the adaptive hold)
    max_hold_ms: Annotated[float, Field(ge=0, le=600_000)] | list[Annotated[float, Field(ge=0, le=600_000)]] | None \
        = None

    @field_validator("boundaries")
    @classmethod
    def _rising(cls, value: list[float]) -> list[float]:
        for low, high in pairwise(value):
            if high <= low:
                raise ValueError(f"boundaries must rise: {high:g} follows {low:g}")
        return value

    @model_validator(mode="after")
    def _holds(self) -> BucketBy:
        if isinstance(self.max_hold_ms, list) and len(self.max_hold_ms) != len(self.boundaries) + 1:
            raise ValueError(f"max_hold_ms: one per bucket, {len(self.boundaries) + 1} for {len(self.boundaries)} "
                             f"boundaries (or one number for all), not {len(self.max_hold_ms)}")
        return self


class PadToPreferred(Model):
    """`batch.pad_to_preferred`: fill each batch up to the next preferred size with this item; its answers are
    dropped (meshbatch.batching.preferred)."""

    item: Any  # a JSON value: the body of each padding item

    @field_validator("item")
    @classmethod
    def _json(cls, value: Any) -> Any:
        try:
            orjson.dumps(value)
        except TypeError:
            raise ValueError("must be a JSON value (objects with string keys, arrays, strings, numbers, "
                             "true, false, null)") from None
        return value


Weight = Annotated[float, Field(ge=0.01, le=1000)]


class Fairness(Model):
    """`batch.fairness`: weighted fair sharing of the in-flight slots between batch keys
    (meshbatch.batching.fairness)."""

    # glob pattern over the batch key's values (joined with "/") -> weight; the first pattern that matches wins
    weights: dict[Annotated[str, Field(min_length=1, max_length=256)], Weight] = {}
    default_weight: Weight = 1.0


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
    max_cost: Annotated[float, Field(gt=0, le=1e15)] | None = None  # the cost budget of one batch
    cost: CostSpec | None = None  # what an item costs: bytes | header:NAME | json:PATH
    over_budget: Literal["alone", "refuse"] = "refuse"  # an item costing more than max_cost
    bucket_by: BucketBy | None = None  # shape buckets: items of similar cost share batches
    fairness: Fairness | None = None  # weighted fair shares of the slots between batch keys
    # batch sizes the upstream runs best at: a queue holds (up to max_wait_ms) to reach the smallest, and is cut
    # at the largest it reaches
    preferred_sizes: list[Annotated[int, Field(ge=1, le=100_000)]] = []
    pad_to_preferred: PadToPreferred | None = None  # pad every batch to the next preferred size
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
        if self.max_cost is not None and self.cost is None:
            raise ValueError("max_cost needs cost: what an item costs (bytes, header:NAME or json:PATH)")
        if self.cost is not None and self.max_cost is None and self.bucket_by is None:
            raise ValueError("cost is read for max_cost or bucket_by: set max_cost too")
        if self.bucket_by is not None and self.bucket_by.cost is None and self.cost is None:
            raise ValueError("bucket_by needs a cost: bucket_by.cost (or batch.cost with max_cost)")
        for low, high in pairwise(self.preferred_sizes):
            if high <= low:
                raise ValueError(f"preferred_sizes must rise: {high} follows {low}")
        if self.preferred_sizes and self.preferred_sizes[-1] > self.max_items:
            raise ValueError(f"preferred_sizes: {self.preferred_sizes[-1]} is more than max_items "
                             f"({self.max_items})")
        if self.pad_to_preferred is not None:
            if not self.preferred_sizes:
                raise ValueError("pad_to_preferred pads to preferred_sizes: set them")
            if self.preferred_sizes[-1] != self.max_items:
                raise ValueError("pad_to_preferred: the largest preferred size must be max_items, so that every "
                                 "batch has a size to pad to")
            if self.codec == "grpc":
                raise ValueError("pad_to_preferred adds JSON items: not with codec: grpc")
        if self.adaptive is not None and self.adaptive.candidate is not None:
            problem = candidate_problem(self.adaptive.candidate, max_items=self.max_items,
                                        min_wait_ms=self.min_wait_ms, max_wait_ms=self.max_wait_ms,
                                        max_in_flight=self.max_in_flight, preferred_sizes=self.preferred_sizes,
                                        padded=self.pad_to_preferred is not None)
            if problem is not None:
                raise ValueError(f"adaptive.candidate{problem}")
        if self.fairness is not None and not self.key:
            raise ValueError("fairness shares the slots between batch keys: set batch.key (header:NAME, query:NAME)")
        if self.dedup_window_ms and not self.dedup:
            raise ValueError("dedup_window_ms keeps answers for dedup: set dedup: true, or leave dedup_window_ms 0")
        return self
