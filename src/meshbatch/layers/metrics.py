"""The counters of the resilience and shaping layers, one set per metrics registry, kept across reloads.

Counters are plain dict updates on the hot path (see telemetry/metrics.py); gauges read the state of the
current snapshot's policies (`LayerMetrics.state`) at scrape time.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from typing import Protocol

from meshbatch.telemetry.metrics import Labels, Registry


class LayerState(Protocol):
    """What the gauges read of the current snapshot's layer state (layers/shared.py `Shared`)."""

    def breaker_states(self) -> Iterable[tuple[Labels, float]]: ...
    def budget_remaining(self) -> Iterable[tuple[Labels, float]]: ...
    def concurrency_limits(self) -> Iterable[tuple[Labels, float]]: ...
    def min_rtts(self) -> Iterable[tuple[Labels, float]]: ...

_BY_REGISTRY: weakref.WeakKeyDictionary[Registry, LayerMetrics] = weakref.WeakKeyDictionary()


class LayerMetrics:
    __slots__ = ("attempts", "breaker", "concurrency_rejected", "faults", "mirrors", "overflow", "rate_limited",
                 "retries_denied", "splits", "state")

    def __init__(self, registry: Registry) -> None:
        self.state: LayerState | None = None
        self.attempts = registry.counter(
            "meshbatch_route_attempts_total",
            "Upstream attempts of routes with a retry policy, first or retry (batching routes: in items).",
            ["route", "kind"])
        self.retries_denied = registry.counter(
            "meshbatch_retries_denied_total",
            "Retries not made although the failure was retriable, by reason (budget, max_retries, deadline, "
            "replay_limit, exhausted, no_caller).", ["route", "reason"])
        self.overflow = registry.counter(
            "meshbatch_circuit_breaker_overflow_total",
            "Requests refused by a cluster circuit breaker, by threshold (max_connections: made to wait for a "
            "connection instead, as Envoy's upstream_cx_overflow).", ["cluster", "reason"])
        self.breaker = registry.counter(
            "meshbatch_endpoint_breaker_transitions_total",
            "Endpoint circuit breaker state changes, by the state entered.", ["cluster", "endpoint", "state"])
        self.rate_limited = registry.counter(
            "meshbatch_rate_limited_total", "Requests refused by a local rate limit.", ["route", "limit"])
        self.concurrency_rejected = registry.counter(
            "meshbatch_concurrency_limited_total",
            "Requests refused by the route's adaptive concurrency limit.", ["route"])
        self.faults = registry.counter(
            "meshbatch_faults_injected_total", "Faults injected, by kind (delay, abort).", ["route", "kind"])
        self.mirrors = registry.counter(
            "meshbatch_mirrored_total", "Copies sent to a shadow cluster, by outcome (ok, failed, dropped).",
            ["route", "cluster", "outcome"])
        self.splits = registry.counter(
            "meshbatch_split_total", "Requests (or batches) per destination of a weighted split.",
            ["route", "cluster"])
        registry.gauge("meshbatch_endpoint_breaker_open",
                       "1 while an endpoint's circuit breaker is open or half-open.",
                       ["cluster", "endpoint"], self._read(lambda s: s.breaker_states()))
        registry.gauge("meshbatch_retry_budget_remaining",
                       "Retries the cluster's retry budget would allow now (in units).",
                       ["cluster"], self._read(lambda s: s.budget_remaining()))
        registry.gauge("meshbatch_concurrency_limit", "The adaptive concurrency limit of a route.",
                       ["route"], self._read(lambda s: s.concurrency_limits()))
        registry.gauge("meshbatch_concurrency_min_rtt_seconds", "The measured minimum round trip of a route.",
                       ["route"], self._read(lambda s: s.min_rtts()))

    def _read(self, part: Callable[[LayerState], Iterable[tuple[Labels, float]]]
              ) -> Callable[[], Iterable[tuple[Labels, float]]]:
        def read() -> Iterable[tuple[Labels, float]]:
            return list(part(self.state)) if self.state is not None else []
        return read

    @classmethod
    def of(cls, registry: Registry) -> LayerMetrics:
        """The one instance for `registry` (a reload reuses it, so counters never reset)."""
        metrics = _BY_REGISTRY.get(registry)
        if metrics is None:
            metrics = _BY_REGISTRY[registry] = cls(registry)
        return metrics


__all__ = ["LayerMetrics", "LayerState"]
