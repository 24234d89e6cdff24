"""Clusters: endpoints, discovery, health checks, outlier detection, balancing, circuit breakers."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from meshbatch.config.model.base import (
    Millis,
    Model,
    NonNegInt,
    PositiveInt,
    ReadPath,
    SecretPath,
    UrlPath,
    _check_listen,
    secret,
)
from meshbatch.config.model.security import ClusterTls
from meshbatch.config.plain.clusters import status_expected


class EndpointSpec(Model):
    address: str
    weight: Annotated[int, Field(ge=1, le=1000)] = 1
    metadata: dict[str, str] = {}

    _address = field_validator("address")(classmethod(lambda cls, v: _check_listen(v)))


class Discovery(Model):
    """Where a cluster's endpoints come from. Keys apply per `type`; the checks of meaning say which."""

    type: str = "static"
    path: ReadPath | None = None  # file
    refresh_ms: Millis | None = None  # file: poll interval (1000); dns: interval when the TTL is not used (5000)
    name: str | None = None  # dns: the name to resolve (for SRV, e.g. _http._tcp.orders.default.svc.cluster.local)
    record: Literal["A", "AAAA", "ALL", "SRV"] = "A"  # dns
    port: Annotated[int, Field(ge=1, le=65535)] | None = None  # dns A/AAAA; kubernetes: the endpoints' port
    nameservers: list[str] = []  # dns: HOST or HOST:PORT; empty = the system's resolv.conf
    respect_ttl: bool = True  # dns
    timeout_ms: Millis = 2_000  # dns query, etcd request, kubernetes API request
    urls: Annotated[list[str], secret("url")] = []  # etcd client URLs, e.g. http://127.0.0.1:2379
    prefix: str | None = None  # etcd key prefix
    service: str | None = None  # kubernetes: the Service whose EndpointSlices list the endpoints
    namespace: str | None = None  # kubernetes: default the pod's own (in a cluster), else the kubeconfig context's
    port_name: str | None = None  # kubernetes: the Service port's name (or `port`: the endpoints' port number)
    kubeconfig: SecretPath | None = None  # kubernetes: a kubeconfig file; absent: in-cluster config, else $KUBECONFIG
    context: str | None = None  # kubernetes: the kubeconfig context (default: its current one)
    initial_fetch_timeout_ms: Annotated[int, Field(ge=0, le=600_000)] = 5_000

    @field_validator("nameservers")
    @classmethod
    def _nameservers(cls, value: list[str]) -> list[str]:
        for item in value:
            host, sep, port = item.rpartition(":")
            if sep and "." in host and not port.isdigit():
                raise ValueError(f"{item!r}: a nameserver is HOST or HOST:PORT")
        return value

    @field_validator("urls")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if not url.startswith("http://") or not _check_url_host(url):
                raise ValueError(f"{url!r}: an etcd URL is http://HOST:PORT")
        return value


def _check_url_host(url: str) -> bool:
    rest = url.removeprefix("http://").rstrip("/")
    host, sep, port = rest.rpartition(":")
    return bool(sep and host and port.isdigit())


class HealthCheck(Model):
    """Active health checks on every endpoint each `interval_ms`: `type: http` GETs `path` (healthy when its status
    is expected); `type: grpc` calls grpc.health.v1.Health/Check for `service` over the cluster's HTTP/2
    connections (healthy when SERVING)."""

    type: Literal["http", "grpc"] = "http"
    service: str | None = None  # grpc: the service name asked about; absent: "" (the server as a whole)
    path: UrlPath = "/health"
    host: str | None = None  # Host header; default: the cluster name
    interval_ms: Millis = 5_000
    timeout_ms: Millis = 1_000
    unhealthy_threshold: Annotated[int, Field(ge=1, le=1000)] = 3
    healthy_threshold: Annotated[int, Field(ge=1, le=1000)] = 2
    unhealthy_interval_ms: Millis | None = None  # while an endpoint is unhealthy; default interval_ms
    expected_statuses: list[Annotated[int, Field(ge=100, le=599)] | str] = [200]

    @field_validator("expected_statuses")
    @classmethod
    def _statuses(cls, value: list[int | str]) -> list[int | str]:
        for item in value:
            if isinstance(item, str):
                lo, sep, hi = item.partition("-")
                if not (sep and lo.isdigit() and hi.isdigit() and 100 <= int(lo) <= int(hi) <= 599):
                    raise ValueError(f"{item!r}: a status is a number or a range 'LO-HI', e.g. 200-299")
        return value

    @model_validator(mode="after")
    def _kind(self) -> HealthCheck:
        if self.type == "grpc":
            if "path" in self.model_fields_set or "expected_statuses" in self.model_fields_set:
                raise ValueError("a grpc health check calls grpc.health.v1.Health/Check: path and "
                                 "expected_statuses are for type http")
        elif self.service is not None:
            raise ValueError("service is for a grpc health check (type: grpc)")
        return self

    def expects(self, status: int) -> bool:
        return status_expected(self.expected_statuses, status)


Percent = Annotated[int, Field(ge=0, le=100)]


class OutlierDetection(Model):
    """Passive health: endpoints that fail are ejected from balancing for a growing time (Envoy's names)."""

    consecutive_5xx: Annotated[int, Field(ge=1)] | None = 5
    consecutive_gateway_failure: Annotated[int, Field(ge=1)] | None = 5
    interval_ms: Millis = 10_000
    base_ejection_time_ms: Millis = 30_000
    max_ejection_time_ms: Millis = 300_000
    max_ejection_percent: Percent = 10
    success_rate_minimum_hosts: Annotated[int, Field(ge=1)] = 5
    success_rate_request_volume: Annotated[int, Field(ge=1)] = 100
    success_rate_stdev_factor: Annotated[int, Field(ge=0)] | None = 1900
    failure_percentage_threshold: Percent | None = None
    failure_percentage_minimum_hosts: Annotated[int, Field(ge=1)] = 5
    failure_percentage_request_volume: Annotated[int, Field(ge=1)] = 50
    successful_active_health_check_uneject_host: bool = True


class LbConfig(Model):
    """Options of the balancers; each balancer reads the keys it uses."""

    choice_count: Annotated[int, Field(ge=2, le=100)] = 2  # least_request, ewma
    decay_ms: Millis = 10_000  # ewma: the window over which latency is remembered
    default_rtt_ms: Annotated[float, Field(gt=0, le=600_000)] = 30  # ewma: assumed before a first answer
    failure_penalty_ms: Annotated[float, Field(ge=0, le=600_000)] = 1_000  # ewma: cost of a 5xx, 429 or error
    failure_penalty_decay_ms: Millis = 2_000  # ewma: how fast that penalty fades
    ring_size: Annotated[int, Field(ge=16, le=8_388_608)] = 1024  # ring_hash: minimum ring entries
    table_size: Annotated[int, Field(ge=17, le=5_000_011)] = 65537  # maglev: a prime
    # ring_hash, maglev: bounded loads; an endpoint past this percent of the average requests in flight passes the key
    # on to the next one with room (Envoy's name; 100 to 100000, e.g. 125; absent: no bound)
    hash_balance_factor: Annotated[int, Field(ge=100, le=100_000)] | None = None

    @field_validator("table_size")
    @classmethod
    def _prime(cls, value: int) -> int:
        if value < 2 or any(value % d == 0 for d in range(2, int(value**0.5) + 1)):
            raise ValueError("must be a prime number, e.g. 65537")
        return value


# -- circuit breakers of a cluster (meshbatch.layers) ---------------------------------------------------------


class RetryBudget(Model):
    """Retries allowed to a cluster: in flight, max(min_retry_concurrency, budget_percent of the requests in
    flight) (Envoy); over `window_ms`, budget_percent of the requests sent plus min_retries_per_second (Linkerd)."""

    budget_percent: Annotated[float, Field(ge=0, le=1000)] = 20
    min_retry_concurrency: NonNegInt = 3
    min_retries_per_second: Annotated[float, Field(ge=0, le=1_000_000)] = 10
    window_ms: Annotated[int, Field(ge=1_000, le=600_000)] = 10_000


class EndpointBreaker(Model):
    """Per endpoint: open after consecutive failures, one probe after `open_ms` (doubling up to max_open_ms)."""

    consecutive_failures: Annotated[int, Field(ge=1, le=100_000)] = 5
    failure_on: Literal["5xx", "gateway-error"] = "5xx"
    open_ms: Millis = 5_000
    max_open_ms: Millis = 60_000

    @model_validator(mode="after")
    def _order(self) -> EndpointBreaker:
        if self.max_open_ms < self.open_ms:
            raise ValueError("max_open_ms must be >= open_ms")
        return self


class CircuitBreakers(Model):
    """Thresholds over the whole cluster (Envoy's names); beyond one, a request is answered 503 at once."""

    max_connections: PositiveInt = 1_024
    max_pending: NonNegInt = 1_024
    max_requests: PositiveInt = 1_024
    max_retries: NonNegInt | None = None  # retries in flight; none: the budget alone decides
    retry_budget: RetryBudget | None = RetryBudget()
    endpoint: EndpointBreaker | None = None


class Cluster(Model):
    name: Annotated[str, Field(min_length=1)]
    endpoints: list[str | EndpointSpec] = []  # the static source; required unless `discovery` is dynamic
    discovery: Discovery | None = None
    lb: str = "round_robin"
    lb_config: LbConfig = LbConfig()
    hash_key: str | None = None  # ring_hash, maglev: 'header:NAME' for plain requests (batches use the batch key)
    health_check: HealthCheck | None = None
    outlier_detection: OutlierDetection | None = None
    connect_timeout_ms: Millis = 1_000
    max_connections: PositiveInt = 1_024
    max_pending: NonNegInt = 1_024
    idle_timeout_ms: Millis = 30_000
    max_response_bytes: PositiveInt = 67_108_864
    circuit_breakers: CircuitBreakers | None = None  # set: every route to this cluster goes through them
    tls: ClusterTls | None = None  # mTLS to the endpoints (meshbatch.security); absent: plaintext
    # http2: streams over few connections per endpoint, h2c (prior knowledge) in plaintext, h2 by ALPN over `tls`
    protocol: Literal["http1", "http2"] = "http1"

    @model_validator(mode="after")
    def _grpc_health(self) -> Cluster:
        if self.health_check is not None and self.health_check.type == "grpc" and self.protocol != "http2":
            raise ValueError("health_check type grpc needs protocol: http2 (gRPC runs over HTTP/2)")
        return self

    @field_validator("endpoints")
    @classmethod
    def _endpoints(cls, value: list[str | EndpointSpec]) -> list[str | EndpointSpec]:
        for item in value:
            if isinstance(item, str):
                _check_listen(item)
        return value

    @field_validator("hash_key")
    @classmethod
    def _hash_key(cls, value: str | None) -> str | None:
        if value is not None:
            kind, _, name = value.partition(":")
            if kind != "header" or not name:
                raise ValueError(f"{value!r}: a hash key is 'header:NAME'")
        return value
