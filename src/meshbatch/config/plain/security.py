"""The security keys in their run-time form: the workload identity, TLS, authorization policies, JWT and the
request rates (meshbatch.config.model.security)."""

from __future__ import annotations

from typing import Literal

from msgspec import field

from meshbatch.config.plain.base import Plain

TLS_MODES = ("strict", "permissive", "disable")
JwtAlgorithm = Literal["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]
JWT_ALGORITHMS: tuple[JwtAlgorithm, ...] = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
                                           "ES512", "EdDSA")


class Identity(Plain, frozen=True, kw_only=True):
    """The workload's certificate, key and trust bundle (PEM files), watched: a change applies to new handshakes."""

    cert: str
    key: str
    ca: str
    trust_domain: str | None = None
    watch_interval_ms: int = 1000


class ListenerTls(Plain, frozen=True, kw_only=True):
    """mTLS on a listener: `strict` (TLS with a client certificate only), `permissive` (that, or plaintext on the
    same port, told apart by the first byte), `disable` (plaintext, on a listener that can be switched by reload)."""

    mode: Literal["strict", "permissive", "disable"] = "strict"
    min_version: Literal["1.2", "1.3"] = "1.3"
    identity: Identity | None = None
    trust_domains: list[str] = []
    handshake_timeout_ms: int = 10000


class ClusterTls(Plain, frozen=True, kw_only=True):
    """mTLS to a cluster's endpoints: the proxy presents its identity and checks the server's."""

    mode: Literal["strict", "permissive", "disable"] = "strict"
    min_version: Literal["1.2", "1.3"] = "1.3"
    identity: Identity | None = None
    server_ids: list[str] = []
    trust_domains: list[str] = []
    sni: str | None = None


class Source(Plain, frozen=True, kw_only=True):
    """Who sends the request. Each non-empty field must match (AND); within a field, any value (OR)."""

    principals: list[str] = []
    not_principals: list[str] = []
    namespaces: list[str] = []
    not_namespaces: list[str] = []
    ip_blocks: list[str] = []
    not_ip_blocks: list[str] = []
    request_principals: list[str] = []
    not_request_principals: list[str] = []


class Operation(Plain, frozen=True, kw_only=True):
    """What is asked for. `paths` match the normalized path (no query); "*" wildcards."""

    hosts: list[str] = []
    not_hosts: list[str] = []
    methods: list[str] = []
    not_methods: list[str] = []
    paths: list[str] = []
    not_paths: list[str] = []


class From(Plain, frozen=True, kw_only=True):
    source: Source


class To(Plain, frozen=True, kw_only=True):
    operation: Operation


class Condition(Plain, frozen=True, kw_only=True):
    key: str
    values: list[str] = []
    not_values: list[str] = []


class Rule(Plain, frozen=True, kw_only=True):
    """Matches when `from`, `to` and `when` all match (an empty part matches everything)."""

    from_: list[From] = field(name="from", default_factory=list)
    to: list[To] = []
    when: list[Condition] = []


class Policy(Plain, frozen=True, kw_only=True):
    """An AuthorizationPolicy: DENY policies that match deny; when ALLOW policies exist, one must match."""

    name: str
    action: Literal["ALLOW", "DENY"] = "ALLOW"
    rules: list[Rule] = []


class Jwt(Plain, frozen=True, kw_only=True):
    """Bearer JWT validation for an edge listener: signature (keys from a JWKS file, watched), issuer, audience,
    expiry. An invalid token is a 401; a missing one too, unless `required: false`."""

    issuer: str
    audiences: list[str] = []
    jwks: str
    header: str = "authorization"
    required: bool = True
    forward: bool = True
    algorithms: list[JwtAlgorithm] = field(default_factory=lambda: list(JWT_ALGORITHMS))
    clock_skew_s: int = 60
    max_token_bytes: int = 8192
    watch_interval_ms: int = 1000


class RequestRate(Plain, frozen=True, kw_only=True):
    """A token bucket: `rps` requests a second, `burst` at most saved up (default: rps, at least 1)."""

    rps: float
    burst: int | None = None
    max_keys: int = 100000
