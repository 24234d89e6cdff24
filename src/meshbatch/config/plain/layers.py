"""A route's resilience and traffic shaping in their run-time form: retries, rate limits, adaptive concurrency,
faults, mirroring, weighted clusters (meshbatch.config.model.layers)."""

from __future__ import annotations

from typing import Literal

from msgspec import field

from meshbatch.config.plain.base import Plain

RetryCondition = Literal["5xx", "gateway-error", "reset", "connect-failure", "retriable-4xx",
                         "retriable-status-codes", "cancelled", "deadline-exceeded", "internal",
                         "resource-exhausted", "unavailable"]
# gRPC statuses a retry may be on (Envoy's x-envoy-retry-grpc-on names), read from an upstream's grpc-status
GRPC_RETRY_CONDITIONS: tuple[RetryCondition, ...] = ("cancelled", "deadline-exceeded", "internal",
                                                     "resource-exhausted", "unavailable")
RETRY_CONDITIONS: tuple[RetryCondition, ...] = ("5xx", "gateway-error", "reset", "connect-failure", "retriable-4xx",
                                                "retriable-status-codes", *GRPC_RETRY_CONDITIONS)

class Backoff(Plain, frozen=True, kw_only=True):
    """Fully jittered exponential backoff: retry n waits a random time in [0, min(max_ms, base_ms * 2^n)]."""

    base_ms: float = 25.0
    max_ms: float | None = None


class Retry(Plain, frozen=True, kw_only=True):
    retry_on: list[RetryCondition] = field(default_factory=lambda: ["connect-failure", "reset", "gateway-error"])
    num_retries: int = 2
    retriable_status_codes: list[int] = []
    backoff: Backoff = Backoff()
    max_replay_bytes: int = 1048576


class RateLimit(Plain, frozen=True, kw_only=True):
    """A token bucket per route, or per caller (key); `rate` tokens a second, at most `burst` saved up."""

    name: str | None = None
    key: str | None = None
    unit: Literal["requests", "items"] = "requests"
    rate: float
    burst: int | None = None
    max_keys: int = 10000

    @property
    def label(self) -> str:
        """The name in metrics and answers: `name`, else the key (or "route"), with " items" when counted so."""
        return self.name or (self.key or "route") + (" items" if self.unit == "items" else "")


class AdaptiveConcurrency(Plain, frozen=True, kw_only=True):
    """A gradient controller on the minimum round trip (Envoy's adaptive concurrency, per route)."""

    sample_window_ms: int = 100
    sample_percentile: float = 50.0
    buffer_percent: float = 25.0
    min_rtt_interval_ms: int = 60000
    min_rtt_requests: int = 50
    jitter_percent: float = 15.0
    min_concurrency: int = 3
    max_concurrency: int = 1000


class FaultDelay(Plain, frozen=True, kw_only=True):
    fixed_ms: int
    percent: float = 100.0


class FaultAbort(Plain, frozen=True, kw_only=True):
    status: int = 503
    percent: float = 100.0


class Fault(Plain, frozen=True, kw_only=True):
    delay: FaultDelay | None = None
    abort: FaultAbort | None = None
    from_headers: bool = False
    max_active: int | None = None


class Mirror(Plain, frozen=True, kw_only=True):
    """A copy of each request (or batch) to a shadow cluster; its answer is dropped, never waited for."""

    cluster: str
    percent: float = 100.0
    max_in_flight: int = 64
    timeout_ms: int | None = None


class WeightedCluster(Plain, frozen=True, kw_only=True):
    cluster: str
    weight: int
    subset: dict[str, str] = {}
