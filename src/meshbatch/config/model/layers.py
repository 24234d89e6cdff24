"""Resilience and traffic shaping of a route (meshbatch.layers): retries, rate limits, adaptive concurrency,
faults, mirroring, weighted clusters."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from meshbatch.config.model.base import Millis, Model, NonNegInt, PositiveInt

# gRPC statuses a retry may be on (Envoy's x-envoy-retry-grpc-on names), read from an upstream's grpc-status
GRPC_RETRY_CONDITIONS = ("cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable")
RETRY_CONDITIONS = ("5xx", "gateway-error", "reset", "connect-failure", "retriable-4xx", "retriable-status-codes",
                    *GRPC_RETRY_CONDITIONS)
Share = Annotated[float, Field(ge=0, le=100)]  # a percentage of requests


class Backoff(Model):
    """Fully jittered exponential backoff: retry n waits a random time in [0, min(max_ms, base_ms * 2^n)]."""

    base_ms: Annotated[float, Field(gt=0, le=60_000)] = 25
    max_ms: Annotated[float, Field(gt=0, le=600_000)] | None = None  # default 10 x base_ms

    @model_validator(mode="after")
    def _order(self) -> Backoff:
        if self.max_ms is not None and self.max_ms < self.base_ms:
            raise ValueError("max_ms must be >= base_ms")
        return self


class Retry(Model):
    retry_on: list[Literal["5xx", "gateway-error", "reset", "connect-failure", "retriable-4xx",
                           "retriable-status-codes", "cancelled", "deadline-exceeded", "internal",
                           "resource-exhausted", "unavailable"]] = ["connect-failure", "reset", "gateway-error"]
    num_retries: Annotated[int, Field(ge=0, le=10)] = 2
    retriable_status_codes: list[Annotated[int, Field(ge=100, le=599)]] = []
    backoff: Backoff = Backoff()
    max_replay_bytes: NonNegInt = 1_048_576  # a plain request with a larger body is sent once, never replayed

    @model_validator(mode="after")
    def _codes(self) -> Retry:
        if ("retriable-status-codes" in self.retry_on) != bool(self.retriable_status_codes):
            raise ValueError("retry_on 'retriable-status-codes' and retriable_status_codes go together")
        return self


class RateLimit(Model):
    """A token bucket per route, or per caller (key); `rate` tokens a second, at most `burst` saved up."""

    name: Annotated[str, Field(min_length=1)] | None = None  # in metrics; default: the key, or "route"
    key: str | None = None  # header:NAME | identity | client; absent: one bucket for the whole route
    unit: Literal["requests", "items"] = "requests"
    rate: Annotated[float, Field(gt=0, le=10_000_000)]
    burst: Annotated[int, Field(ge=1)] | None = None  # default: rate (at least 1)
    max_keys: Annotated[int, Field(ge=1, le=1_000_000)] = 10_000

    @field_validator("key")
    @classmethod
    def _key(cls, value: str | None) -> str | None:
        if value is not None and value not in ("identity", "client"):
            kind, _, name = value.partition(":")
            if kind != "header" or not name:
                raise ValueError(f"{value!r}: a rate limit key is 'header:NAME', 'identity' or 'client'")
        return value

    @property
    def label(self) -> str:
        """The name in metrics and answers: `name`, else the key (or "route"), with " items" when counted so."""
        return self.name or (self.key or "route") + (" items" if self.unit == "items" else "")


class AdaptiveConcurrency(Model):
    """A gradient controller on the minimum round trip (Envoy's adaptive concurrency, per route)."""

    sample_window_ms: Annotated[int, Field(ge=10, le=60_000)] = 100
    sample_percentile: Annotated[float, Field(gt=0, le=100)] = 50
    buffer_percent: Share = 25
    min_rtt_interval_ms: Millis = 60_000
    min_rtt_requests: Annotated[int, Field(ge=1, le=10_000)] = 50
    jitter_percent: Share = 15
    min_concurrency: Annotated[int, Field(ge=1, le=100_000)] = 3
    max_concurrency: Annotated[int, Field(ge=1, le=100_000)] = 1_000

    @model_validator(mode="after")
    def _bounds(self) -> AdaptiveConcurrency:
        if self.min_concurrency > self.max_concurrency:
            raise ValueError("min_concurrency must be <= max_concurrency")
        return self


class FaultDelay(Model):
    fixed_ms: Millis
    percent: Share = 100


class FaultAbort(Model):
    status: Annotated[int, Field(ge=200, le=599)] = 503
    percent: Share = 100


class Fault(Model):
    delay: FaultDelay | None = None
    abort: FaultAbort | None = None
    from_headers: bool = False  # honour x-meshbatch-fault-* request headers (for tests; off by default)
    max_active: PositiveInt | None = None  # faults in progress at once; beyond it requests pass untouched

    @model_validator(mode="after")
    def _some(self) -> Fault:
        if self.delay is None and self.abort is None and not self.from_headers:
            raise ValueError("set delay, abort or from_headers")
        return self


class Mirror(Model):
    """A copy of each request (or batch) to a shadow cluster; its answer is dropped, never waited for."""

    cluster: Annotated[str, Field(min_length=1)]
    percent: Share = 100
    max_in_flight: Annotated[int, Field(ge=1, le=100_000)] = 64  # beyond it copies are dropped
    timeout_ms: Millis | None = None  # default: the route's timeout_ms


class WeightedCluster(Model):
    cluster: Annotated[str, Field(min_length=1)]
    weight: Annotated[int, Field(ge=0, le=1_000_000)]
    subset: dict[str, str] = {}  # only endpoints whose metadata has all these pairs
