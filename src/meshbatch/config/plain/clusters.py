"""Clusters in their run-time form: endpoints, discovery, health checks, outlier detection, balancing, circuit
breakers (meshbatch.config.model.clusters)."""

from __future__ import annotations

from typing import ClassVar, Literal

from msgspec import field

from meshbatch.config.plain.base import Plain
from meshbatch.config.plain.security import ClusterTls


def status_expected(statuses: list[int | str], status: int) -> bool:
    """`status` is one of a health check's `expected_statuses` (codes, or "lo-hi" ranges, already checked)."""
    for item in statuses:
        if isinstance(item, int):
            if status == item:
                return True
        else:
            lo, _, hi = item.partition("-")
            if int(lo) <= status <= int(hi):
                return True
    return False


class EndpointSpec(Plain, frozen=True, kw_only=True):
    address: str
    weight: int = 1
    metadata: dict[str, str] = {}


class Discovery(Plain, frozen=True, kw_only=True):
    """Where a cluster's endpoints come from. Keys apply per `type`; the checks of meaning say which."""

    SECRETS: ClassVar[dict[str, str]] = {"urls": "url"}  # redacted in every display (config/redact.py)
    type: str = "static"
    path: str | None = None
    refresh_ms: int | None = None
    name: str | None = None
    record: Literal["A", "AAAA", "ALL", "SRV"] = "A"
    port: int | None = None
    nameservers: list[str] = []
    respect_ttl: bool = True
    timeout_ms: int = 2000
    urls: list[str] = []
    prefix: str | None = None
    service: str | None = None
    namespace: str | None = None
    port_name: str | None = None
    kubeconfig: str | None = None
    context: str | None = None
    initial_fetch_timeout_ms: int = 5000


class HealthCheck(Plain, frozen=True, kw_only=True):
    """Active health checks on every endpoint each `interval_ms`: `type: http` GETs `path` (healthy when its status
    is expected); `type: grpc` calls grpc.health.v1.Health/Check for `service` over the cluster's HTTP/2
    connections (healthy when SERVING)."""

    type: Literal["http", "grpc"] = "http"
    service: str | None = None
    path: str = "/health"
    host: str | None = None
    interval_ms: int = 5000
    timeout_ms: int = 1000
    unhealthy_threshold: int = 3
    healthy_threshold: int = 2
    unhealthy_interval_ms: int | None = None
    expected_statuses: list[int | str] = field(default_factory=lambda: [200])

    def expects(self, status: int) -> bool:
        return status_expected(self.expected_statuses, status)


class OutlierDetection(Plain, frozen=True, kw_only=True):
    """Passive health: endpoints that fail are ejected from balancing for a growing time (Envoy's names)."""

    consecutive_5xx: int | None = 5
    consecutive_gateway_failure: int | None = 5
    interval_ms: int = 10000
    base_ejection_time_ms: int = 30000
    max_ejection_time_ms: int = 300000
    max_ejection_percent: int = 10
    success_rate_minimum_hosts: int = 5
    success_rate_request_volume: int = 100
    success_rate_stdev_factor: int | None = 1900
    failure_percentage_threshold: int | None = None
    failure_percentage_minimum_hosts: int = 5
    failure_percentage_request_volume: int = 50
    successful_active_health_check_uneject_host: bool = True


class LbConfig(Plain, frozen=True, kw_only=True):
    """Options of the balancers; each balancer reads the keys it uses."""

    choice_count: int = 2
    decay_ms: int = 10000
    default_rtt_ms: float = 30.0
    failure_penalty_ms: float = 1000.0
    failure_penalty_decay_ms: int = 2000
    ring_size: int = 1024
    table_size: int = 65537
    hash_balance_factor: int | None = None


class RetryBudget(Plain, frozen=True, kw_only=True):
    """Retries allowed to a cluster: in flight, max(min_retry_concurrency, budget_percent of the requests in
    flight) (Envoy); over `window_ms`, budget_percent of the requests sent plus min_retries_per_second (Linkerd)."""

    budget_percent: float = 20.0
    min_retry_concurrency: int = 3
    min_retries_per_second: float = 10.0
    window_ms: int = 10000


class EndpointBreaker(Plain, frozen=True, kw_only=True):
    """Per endpoint: open after consecutive failures, one probe after `open_ms` (doubling up to max_open_ms)."""

    consecutive_failures: int = 5
    failure_on: Literal["5xx", "gateway-error"] = "5xx"
    open_ms: int = 5000
    max_open_ms: int = 60000


class CircuitBreakers(Plain, frozen=True, kw_only=True):
    """Thresholds over the whole cluster (Envoy's names); beyond one, a request is answered 503 at once."""

    max_connections: int = 1024
    max_pending: int = 1024
    max_requests: int = 1024
    max_retries: int | None = None
    retry_budget: RetryBudget | None = RetryBudget()
    endpoint: EndpointBreaker | None = None


class Cluster(Plain, frozen=True, kw_only=True):
    name: str
    endpoints: list[str | EndpointSpec] = []
    discovery: Discovery | None = None
    lb: str = "round_robin"
    lb_config: LbConfig = LbConfig()
    hash_key: str | None = None
    health_check: HealthCheck | None = None
    outlier_detection: OutlierDetection | None = None
    connect_timeout_ms: int = 1000
    max_connections: int = 1024
    max_pending: int = 1024
    idle_timeout_ms: int = 30000
    max_response_bytes: int = 67108864
    circuit_breakers: CircuitBreakers | None = None
    tls: ClusterTls | None = None
    protocol: Literal["http1", "http2"] = "http1"
