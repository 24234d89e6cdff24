"""A route's `batch:` block in its run-time form (meshbatch.config.model.batch)."""

from __future__ import annotations

from typing import Any, Literal

from msgspec import field

from meshbatch.config.plain.adaptive import Adaptive
from meshbatch.config.plain.base import Plain

TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def idempotency_scope_problem(spec: str) -> str | None:
    """What is wrong with an `idempotency_scope` value (meshbatch.security.scope), or None."""
    kind, _, name = spec.partition(":")
    if spec in ("principal", "global") or (kind == "header" and name and set(name) <= TOKEN_CHARS):
        return None
    return "must be 'principal', 'header:NAME' or 'global'"


# The batch method of the envelope mode (src/meshbatch/grpc/meshbatch_batch.proto), which the consumer SDK serves.
ENVELOPE_METHOD = "/meshbatch.batch.v1.Batch/Process"
# Statuses with which an upstream blames the request itself (meshbatch.batching.isolate).
BLAME_STATUSES = (400, 413, 415, 422)


class Isolate(Plain, frozen=True, kw_only=True):
    """`batch.isolate`: what happens when the upstream refuses a whole batch for something in its request."""

    mode: Literal["bisect", "off"] = "bisect"
    statuses: list[int] = field(default_factory=lambda: [400, 413, 415, 422])
    max_calls: int | None = None


class InFlightGradient(Plain, frozen=True, kw_only=True):
    """`batch.max_in_flight: {auto: {...}}`: the bounds of the batches in flight and the settings of the gradient
    controller that moves between them (meshbatch.layers.concurrency, as `adaptive_concurrency` uses it)."""

    min: int = 1
    max: int = 16
    sample_window_ms: int = 250
    sample_percentile: float = 50.0
    buffer_percent: float = 25.0
    min_rtt_interval_ms: int = 30000
    min_rtt_batches: int = 20
    jitter_percent: float = 15.0


class AutoInFlight(Plain, frozen=True, kw_only=True):
    """`max_in_flight: auto` (the defaults) or `max_in_flight: {auto: {min, max, ...}}`."""

    auto: InFlightGradient = InFlightGradient()


class GrpcBatch(Plain, frozen=True, kw_only=True):
    """`batch.grpc`: how gRPC unary calls are batched (meshbatch.batching.codecs.grpc). With `descriptor_set`,
    into the service's own batch method (AIP-231 BatchGet); without, in meshbatch's envelope."""

    descriptor_set: str | None = None
    batch_method: str = ENVELOPE_METHOD
    items_field: str | None = None
    results_field: str | None = None
    statuses_field: str | None = None
    max_message_bytes: int = 4194304

    @property
    def envelope(self) -> bool:
        return self.descriptor_set is None


class BucketBy(Plain, frozen=True, kw_only=True):
    """`batch.bucket_by`: items of similar cost share batches (meshbatch.batching.buckets)."""

    cost: str | None = None
    boundaries: list[float]
    max_hold_ms: float | list[float] | None = None


class PadToPreferred(Plain, frozen=True, kw_only=True):
    """`batch.pad_to_preferred`: fill each batch up to the next preferred size with this item; its answers are
    dropped (meshbatch.batching.preferred)."""

    item: Any


class Fairness(Plain, frozen=True, kw_only=True):
    """`batch.fairness`: weighted fair sharing of the in-flight slots between batch keys
    (meshbatch.batching.fairness)."""

    weights: dict[str, float] = {}
    default_weight: float = 1.0


class Batch(Plain, frozen=True, kw_only=True):
    max_items: int = 64
    max_wait_ms: float = 5.0
    min_wait_ms: float = 0.0
    max_bytes: int = 1048576
    codec: str = "json-array"
    upstream_path: str = "/batch"
    upstream_method: Literal["POST", "PUT"] = "POST"
    max_in_flight: int | AutoInFlight = 4
    max_queue: int = 10000
    key: list[str] = []
    dedup: bool = True
    dedup_window_ms: float = 0.0
    dedup_max_keys: int = 10000
    idempotency_scope: str = "principal"
    adaptive: Adaptive | None = None
    isolate: Isolate = Isolate()
    grpc: GrpcBatch | None = None
    max_cost: float | None = None
    cost: str | None = None
    over_budget: Literal["alone", "refuse"] = "refuse"
    bucket_by: BucketBy | None = None
    fairness: Fairness | None = None
    preferred_sizes: list[int] = []
    pad_to_preferred: PadToPreferred | None = None
    stream_results: bool = False
    stream_index_field: str | None = None

    @property
    def in_flight_cap(self) -> int:
        """The most batches in flight: the fixed number, or the upper bound of `auto`."""
        slots = self.max_in_flight
        return slots if isinstance(slots, int) else slots.auto.max
