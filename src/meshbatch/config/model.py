"""The configuration as frozen, typed objects.

Every key a user can write is a field here. Models forbid unknown keys (the loader turns those errors into
"did you mean" hints) and are frozen: a reload builds a new tree and swaps one reference.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from meshbatch.security.model import ClusterTls, Identity, Jwt, ListenerTls, Policy, RequestRate

PositiveInt = Annotated[int, Field(ge=1)]
NonNegInt = Annotated[int, Field(ge=0)]
Millis = Annotated[int, Field(ge=1, le=86_400_000)]


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=False, validate_default=True)


def _check_listen(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:8080")
    if host.startswith("[") != host.endswith("]"):
        raise ValueError("an IPv6 host must be in brackets, e.g. [::1]:8080")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("port must be a number from 0 to 65535")
    return value


class Limits(Model):
    """Per-listener protections against slow, large or abusive clients."""

    max_header_bytes: Annotated[int, Field(ge=256, le=1_048_576)] = 65_536
    max_body_bytes: Annotated[int, Field(ge=0)] = 8_388_608
    header_timeout_ms: Millis = 10_000
    idle_timeout_ms: Millis = 60_000
    max_connections: PositiveInt = 10_000
    max_pipelined: Annotated[int, Field(ge=1, le=1024)] = 32
    connection_rate: RequestRate | None = None  # requests per second on one connection (429 beyond)
    identity_rate: RequestRate | None = None  # per peer identity (SPIFFE ID, else address), listener-wide


class HeaderMatch(Model):
    name: Annotated[str, Field(min_length=1)]
    exact: str | None = None
    prefix: str | None = None
    present: bool | None = None
    invert: bool = False

    @model_validator(mode="after")
    def _one_kind(self) -> HeaderMatch:
        kinds = [k for k in ("exact", "prefix", "present") if getattr(self, k) is not None]
        if len(kinds) > 1:
            raise ValueError(f"set only one of exact, prefix, present (got {', '.join(kinds)})")
        return self


METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT")


class Match(Model):
    host: str | list[str] | None = None
    path_prefix: str | None = None
    path: str | None = None
    methods: list[str] | None = None
    headers: list[HeaderMatch] = []

    @field_validator("methods")
    @classmethod
    def _methods(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        upper = [m.upper() for m in value]
        bad = [m for m in upper if m not in METHODS]
        if bad:
            raise ValueError(f"unknown method {bad[0]!r}; expected one of {', '.join(METHODS)}")
        return upper

    @field_validator("path_prefix", "path")
    @classmethod
    def _slash(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError("must start with '/'")
        return value

    @field_validator("host")
    @classmethod
    def _hosts(cls, value: str | list[str] | None) -> str | list[str] | None:
        for host in [value] if isinstance(value, str) else value or []:
            if not host or ("*" in host and not (host.startswith("*.") and host.count("*") == 1)):
                raise ValueError(f"host {host!r}: use an exact name or '*.suffix'")
        return value

    @model_validator(mode="after")
    def _path_kind(self) -> Match:
        if self.path is not None and self.path_prefix is not None:
            raise ValueError("set path (exact) or path_prefix, not both")
        return self


class Adaptive(Model):
    target_p99_ms: Annotated[float, Field(gt=0, le=600_000)]
    window: Annotated[int, Field(ge=8, le=10_000)] = 256


class Batch(Model):
    max_items: Annotated[int, Field(ge=1, le=100_000)] = 64
    max_wait_ms: Annotated[float, Field(ge=0, le=600_000)] = 5
    min_wait_ms: Annotated[float, Field(ge=0, le=600_000)] = 0
    max_bytes: Annotated[int, Field(ge=1)] = 1_048_576
    codec: str = "json-array"
    upstream_path: Annotated[str, Field(min_length=1)] = "/batch"
    upstream_method: Literal["POST", "PUT"] = "POST"
    max_in_flight: Annotated[int, Field(ge=1, le=10_000)] = 4
    max_queue: Annotated[int, Field(ge=1)] = 10_000
    key: list[str] = []
    dedup: bool = True
    dedup_window_ms: Annotated[float, Field(ge=0, le=86_400_000)] = 0
    dedup_max_keys: Annotated[int, Field(ge=1, le=10_000_000)] = 10_000
    adaptive: Adaptive | None = None

    @field_validator("upstream_path")
    @classmethod
    def _slash(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with '/'")
        return value

    @field_validator("key")
    @classmethod
    def _keys(cls, value: list[str]) -> list[str]:
        for part in value:
            kind, _, name = part.partition(":")
            if kind not in ("header", "query") or not name:
                raise ValueError(f"{part!r}: a key part is 'header:NAME' or 'query:NAME'")
        return value

    @model_validator(mode="after")
    def _waits(self) -> Batch:
        if self.min_wait_ms > self.max_wait_ms:
            raise ValueError("min_wait_ms must be <= max_wait_ms")
        if self.dedup_window_ms and not self.dedup:
            raise ValueError("dedup_window_ms keeps answers for dedup: set dedup: true, or leave dedup_window_ms 0")
        return self


# -- the preprocessing pipeline (meshbatch.pipeline): one key per step names the stage ----------------------

Encoding = Literal["gzip", "deflate", "zstd", "br"]
ENCODINGS: tuple[Encoding, ...] = ("gzip", "deflate", "zstd", "br")


class Decompress(Model):
    encodings: list[Encoding] = list(ENCODINGS)
    max_bytes: PositiveInt = 8_388_608  # decompressed size cap (a zip bomb is a 413)


class Decode(Model):
    format: Literal["auto", "json", "ndjson", "msgpack"] = "auto"
    split_arrays: bool = False  # a top-level array is several events
    max_events: Annotated[int, Field(ge=1, le=1_000_000)] = 10_000


class Validate(Model):
    schema_: str | dict[str, Any] = Field(alias="schema")  # a JSON Schema file path, or the schema inline
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


# -- ingestion (meshbatch.ingest) ----------------------------------------------------------------------------


class IngestLog(Model):
    backend: str = "sqlite"  # sqlite | jetstream
    path: str | None = None  # sqlite: the log file (default meshbatch-data/ingest-ROUTE.db)
    sync: Literal["full", "normal"] = "full"  # sqlite: fsync each group commit, or only at checkpoints
    max_events: PositiveInt = 1_000_000
    max_bytes: PositiveInt = 1_073_741_824
    on_full: Literal["reject", "block"] = "reject"
    block_timeout_ms: Millis = 5_000
    memory_events: PositiveInt = 100_000  # committed events kept in memory for delivery; the rest read back
    url: str = "nats://127.0.0.1:4222"  # jetstream
    stream: str | None = None  # jetstream (default MESHBATCH_ROUTE)
    subject: str | None = None  # jetstream (default meshbatch.ingest.ROUTE)
    replicas: Annotated[int, Field(ge=1, le=5)] = 1
    ack_wait_ms: Millis = 30_000


class Delivery(Model):
    max_items: Annotated[int, Field(ge=1, le=100_000)] | None = None  # default 1000, or the route's batch block
    max_bytes: PositiveInt | None = None  # default 4 MiB, or the route's batch block
    max_in_flight: Annotated[int, Field(ge=1, le=256)] | None = None  # default 2, or the route's batch block
    linger_ms: Annotated[float, Field(ge=0, le=60_000)] = 0
    timeout_ms: Millis = 10_000
    max_attempts: Annotated[int, Field(ge=1, le=1000)] = 8
    backoff_initial_ms: Annotated[float, Field(gt=0, le=3_600_000)] = 100
    backoff_max_ms: Annotated[float, Field(gt=0, le=3_600_000)] = 30_000


COLUMN_TYPES = ("text", "bigint", "double", "boolean", "json", "timestamp")


class Column(Model):
    field: Annotated[str, Field(min_length=1)]  # a dotted path into the event
    type: Literal["text", "bigint", "double", "boolean", "json", "timestamp"] = "text"


class Sink(Model):
    type: str | None = None  # sqlite | postgres | cluster; default: cluster if the route names one, else sqlite
    path: str | None = None  # sqlite: the database file (default meshbatch-data/sink.db)
    url: str | None = None  # postgres: postgresql://user@host:port/db (${ENV} expanded)
    table: str = "events"
    id_column: str = "event_id"
    columns: dict[str, str | Column] = {}  # column -> event field path (text), or {field, type}
    payload_column: str | None = None  # the whole event as JSON (JSONB); default `payload` when no columns
    received_column: str | None = "received_at"
    create_table: bool = True
    pool_size: Annotated[int, Field(ge=1, le=64)] = 4  # postgres connections
    codec: str | None = None  # cluster: default the route's batch.codec, else json-array
    upstream_path: str | None = None  # cluster: default the route's batch.upstream_path, else /batch


class Ingest(Model):
    ack: Literal["memory", "fsync", "delivered"] = "fsync"
    log: IngestLog = IngestLog()
    delivery: Delivery = Delivery()
    sink: Sink = Sink()


# -- resilience and traffic shaping of a route (meshbatch.layers) -------------------------------------------

RETRY_CONDITIONS = ("5xx", "gateway-error", "reset", "connect-failure", "retriable-4xx", "retriable-status-codes")
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
                           "retriable-status-codes"]] = ["connect-failure", "reset", "gateway-error"]
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


class Route(Model):
    name: Annotated[str, Field(min_length=1)]
    match: Match = Match()
    cluster: str = ""  # required, except on an ingest route whose sink is a database (see checks)
    timeout_ms: Millis = 15_000
    batch: Batch | None = None
    pipeline: list[Step] = []
    ingest: Ingest | None = None
    # resilience and traffic shaping (meshbatch.layers); see docs/traffic.md
    per_try_timeout_ms: Millis | None = None
    retry: Retry | None = None
    rate_limit: list[RateLimit] = []
    adaptive_concurrency: AdaptiveConcurrency | None = None
    fault: Fault | None = None
    mirror: Mirror | None = None
    split: list[WeightedCluster] = []  # instead of `cluster`: weighted clusters (canary)
    split_key: str | None = None  # 'header:NAME': the same value always goes to the same cluster
    subset: dict[str, str] = {}  # only endpoints of `cluster` whose metadata has all these pairs
    subset_fallback: Literal["none", "any"] = "none"  # an empty subset: 503, or any endpoint of the cluster
    policies: list[Policy] = []  # authorization of this route, after the listener's (meshbatch.security)


class Listener(Model):
    name: Annotated[str, Field(min_length=1)]
    listen: str
    routes: list[Route] = []
    limits: Limits = Limits()
    via: bool = True
    request_id_in_response: bool = True
    reuse_port: bool = False  # SO_REUSEPORT: another process may bind the same address (drain handover)
    tls: ListenerTls | None = None  # mTLS (meshbatch.security); absent: plaintext
    policies: list[Policy] = []  # authorization of every request of the listener, before routing
    jwt: Jwt | None = None  # bearer JWT validation (edge listeners)

    _listen = field_validator("listen")(classmethod(lambda cls, v: _check_listen(v)))


class EndpointSpec(Model):
    address: str
    weight: Annotated[int, Field(ge=1, le=1000)] = 1
    metadata: dict[str, str] = {}

    _address = field_validator("address")(classmethod(lambda cls, v: _check_listen(v)))


class Discovery(Model):
    """Where a cluster's endpoints come from. Keys apply per `type`; the checks of meaning say which."""

    type: str = "static"
    path: str | None = None  # file
    refresh_ms: Millis | None = None  # file: poll interval (1000); dns: interval when the TTL is not used (5000)
    name: str | None = None  # dns: the name to resolve (for SRV, e.g. _http._tcp.orders.default.svc.cluster.local)
    record: Literal["A", "AAAA", "ALL", "SRV"] = "A"  # dns
    port: Annotated[int, Field(ge=1, le=65535)] | None = None  # dns A/AAAA; kubernetes: the endpoints' port
    nameservers: list[str] = []  # dns: HOST or HOST:PORT; empty = the system's resolv.conf
    respect_ttl: bool = True  # dns
    timeout_ms: Millis = 2_000  # dns query, etcd request, kubernetes API request
    urls: list[str] = []  # etcd client URLs, e.g. http://127.0.0.1:2379
    prefix: str | None = None  # etcd key prefix
    service: str | None = None  # kubernetes: the Service whose EndpointSlices list the endpoints
    namespace: str | None = None  # kubernetes: default the pod's own (in a cluster), else the kubeconfig context's
    port_name: str | None = None  # kubernetes: the Service port's name (or `port`: the endpoints' port number)
    kubeconfig: str | None = None  # kubernetes: a kubeconfig file; absent: in-cluster config, else $KUBECONFIG
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
    """Active HTTP health checks: GET `path` on every endpoint each `interval_ms`."""

    path: Annotated[str, Field(min_length=1)] = "/health"
    host: str | None = None  # Host header; default: the cluster name
    interval_ms: Millis = 5_000
    timeout_ms: Millis = 1_000
    unhealthy_threshold: Annotated[int, Field(ge=1, le=1000)] = 3
    healthy_threshold: Annotated[int, Field(ge=1, le=1000)] = 2
    unhealthy_interval_ms: Millis | None = None  # while an endpoint is unhealthy; default interval_ms
    expected_statuses: list[Annotated[int, Field(ge=100, le=599)] | str] = [200]

    @field_validator("path")
    @classmethod
    def _slash(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with '/'")
        return value

    @field_validator("expected_statuses")
    @classmethod
    def _statuses(cls, value: list[int | str]) -> list[int | str]:
        for item in value:
            if isinstance(item, str):
                lo, sep, hi = item.partition("-")
                if not (sep and lo.isdigit() and hi.isdigit() and 100 <= int(lo) <= int(hi) <= 599):
                    raise ValueError(f"{item!r}: a status is a number or a range 'LO-HI', e.g. 200-299")
        return value

    def expects(self, status: int) -> bool:
        for item in self.expected_statuses:
            if isinstance(item, int):
                if status == item:
                    return True
            else:
                lo, _, hi = item.partition("-")
                if int(lo) <= status <= int(hi):
                    return True
        return False


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


class Admin(Model):
    listen: str = "127.0.0.1:9901"
    token: str | None = None  # bearer token for mutating endpoints (POST /ingest/replay); none: they are refused

    @field_validator("token")
    @classmethod
    def _token(cls, value: str | None) -> str | None:
        if value is not None and (len(value) < 16 or not value.isprintable() or " " in value):
            raise ValueError("must be at least 16 printable characters without spaces")
        return value

    _listen = field_validator("listen")(classmethod(lambda cls, v: _check_listen(v)))


# -- observability (meshbatch.telemetry): access logs, tracing, the batch recorder behind `meshbatch tune` -------

Fraction = Annotated[float, Field(ge=0, le=1)]


class AccessLog(Model):
    """One JSON line per answered request, buffered and written on a timer (off the request path)."""

    path: Annotated[str, Field(min_length=1)] = "-"  # "-" is stdout; anything else a file, appended to
    sample: Fraction = 1.0  # the share of requests logged
    always_errors: bool = True  # log every 4xx/5xx answer and every flagged one, whatever `sample` says
    flush_ms: Millis = 1_000
    max_buffer: Annotated[int, Field(ge=16, le=10_000_000)] = 65_536  # lines waiting; beyond: dropped, counted


class Tracing(Model):
    """OpenTelemetry spans: one per caller request, one per upstream batch call linked to its members."""

    exporter: Literal["otlp", "console", "file"] = "otlp"
    endpoint: str = "http://127.0.0.1:4318/v1/traces"  # otlp (OTLP/HTTP protobuf)
    headers: dict[str, str] = {}  # otlp
    path: str | None = None  # file: one JSON span per line
    sample: Fraction = 1.0  # share of new traces recorded; a caller's sampled traceparent is always followed
    service_name: Annotated[str, Field(min_length=1)] = "meshbatch"
    timeout_ms: Millis = 10_000  # one export
    export_interval_ms: Millis = 1_000
    max_queue: Annotated[int, Field(ge=16, le=1_000_000)] = 8_192  # spans waiting for export; beyond: dropped
    max_links: Annotated[int, Field(ge=1, le=100_000)] = 1_024  # links per batch span (one per member)

    @field_validator("endpoint")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("an OTLP/HTTP endpoint is http(s)://HOST:PORT/v1/traces")
        return value


class Recorder(Model):
    """A bounded record of recent batches per batching route (arrivals, sizes, upstream times) for `tune`."""

    max_items: Annotated[int, Field(ge=0, le=10_000_000)] = 65_536  # arrivals kept per route; 0 turns it off


class Config(Model):
    admin: Admin | None = Admin()
    listeners: list[Listener] = Field(min_length=1)
    clusters: list[Cluster] = []
    drain_timeout_ms: Millis = 15_000
    access_log: AccessLog | None = None
    tracing: Tracing | None = None
    recorder: Recorder = Recorder()
    identity: Identity | None = None  # the workload certificate used by `tls` blocks that name none


__all__ = [
    "COLUMN_TYPES",
    "METHODS",
    "RETRY_CONDITIONS",
    "STAGES",
    "AccessLog",
    "Adaptive",
    "AdaptiveConcurrency",
    "Admin",
    "Backoff",
    "Batch",
    "CircuitBreakers",
    "Cluster",
    "Column",
    "Compress",
    "Config",
    "Decode",
    "Decompress",
    "Delivery",
    "Discovery",
    "EndpointBreaker",
    "EndpointSpec",
    "Fault",
    "FaultAbort",
    "FaultDelay",
    "Filter",
    "HeaderMatch",
    "HealthCheck",
    "Ingest",
    "IngestLog",
    "LbConfig",
    "Limits",
    "Listener",
    "Match",
    "Mirror",
    "OutlierDetection",
    "RateLimit",
    "Recorder",
    "Retry",
    "RetryBudget",
    "Route",
    "Sink",
    "Step",
    "Tracing",
    "Transform",
    "Validate",
    "WeightedCluster",
]
