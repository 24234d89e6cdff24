"""The security keys of the config: the workload identity, TLS on listeners and clusters, authorization policies,
JWT validation and the per-connection / per-identity request rates.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from meshbatch.config.model.base import ReadPath, SecretPath
from meshbatch.core.spiffe import InvalidSpiffeId, check_trust_domain

TLS_MODES = ("strict", "permissive", "disable")
JWT_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
CONDITION_KEYS = ("request.headers[NAME]", "request.auth.claims[NAME]", "request.auth.principal",
                  "source.principal", "source.namespace", "source.ip")


class SecModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=False, validate_default=True)


def _trust_domains(value: list[str]) -> list[str]:
    for item in value:
        try:
            check_trust_domain(item)
        except InvalidSpiffeId as exc:
            raise ValueError(str(exc)) from None
    return value


class Identity(SecModel):
    """The workload's certificate, key and trust bundle (PEM files), watched: a change applies to new handshakes."""

    cert: Annotated[ReadPath, Field(min_length=1)]
    key: Annotated[SecretPath, Field(min_length=1)]
    ca: Annotated[ReadPath, Field(min_length=1)]  # the trust bundle: one or more root certificates
    trust_domain: str | None = None  # default: the trust domain of `cert`'s SPIFFE ID
    watch_interval_ms: Annotated[int, Field(ge=50, le=3_600_000)] = 1_000

    @field_validator("trust_domain")
    @classmethod
    def _domain(cls, value: str | None) -> str | None:
        return None if value is None else _trust_domains([value])[0]


class ListenerTls(SecModel):
    """mTLS on a listener: `strict` (TLS with a client certificate only), `permissive` (that, or plaintext on the
    same port, told apart by the first byte), `disable` (plaintext, on a listener that can be switched by reload)."""

    mode: Literal["strict", "permissive", "disable"] = "strict"
    min_version: Literal["1.2", "1.3"] = "1.3"
    identity: Identity | None = None  # default: the top-level `identity`
    trust_domains: list[str] = []  # client certificates accepted from; default: the identity's trust domain
    handshake_timeout_ms: Annotated[int, Field(ge=1, le=600_000)] = 10_000

    _domains = field_validator("trust_domains")(classmethod(lambda cls, v: _trust_domains(v)))


class ClusterTls(SecModel):
    """mTLS to a cluster's endpoints: the proxy presents its identity and checks the server's."""

    mode: Literal["strict", "permissive", "disable"] = "strict"  # permissive is refused by the checks (a downgrade)
    min_version: Literal["1.2", "1.3"] = "1.3"
    identity: Identity | None = None
    server_ids: list[str] = []  # SPIFFE ID patterns the upstream must present ('*' wildcards); default: any
    trust_domains: list[str] = []  # default: the identity's trust domain
    sni: str | None = None  # server name sent in the handshake (none by default)

    _domains = field_validator("trust_domains")(classmethod(lambda cls, v: _trust_domains(v)))


class Source(SecModel):
    """Who sends the request. Each non-empty field must match (AND); within a field, any value (OR)."""

    principals: list[str] = []  # peer SPIFFE IDs (with or without 'spiffe://'), '*' wildcards
    not_principals: list[str] = []
    namespaces: list[str] = []  # NS of spiffe://TD/ns/NS/sa/SA
    not_namespaces: list[str] = []
    ip_blocks: list[str] = []  # CIDR, e.g. 10.0.0.0/8
    not_ip_blocks: list[str] = []
    request_principals: list[str] = []  # 'ISSUER/SUBJECT' of a validated JWT
    not_request_principals: list[str] = []

    @field_validator("ip_blocks", "not_ip_blocks")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        import ipaddress

        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an address or CIDR block") from None
        return value


class Operation(SecModel):
    """What is asked for. `paths` match the normalized path (no query); '*' wildcards."""

    hosts: list[str] = []
    not_hosts: list[str] = []
    methods: list[str] = []
    not_methods: list[str] = []
    paths: list[str] = []
    not_paths: list[str] = []

    @field_validator("methods", "not_methods")
    @classmethod
    def _upper(cls, value: list[str]) -> list[str]:
        return [m.upper() for m in value]


class From(SecModel):
    source: Source


class To(SecModel):
    operation: Operation


class Condition(SecModel):
    key: Annotated[str, Field(min_length=1)]
    values: list[str] = []
    not_values: list[str] = []

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        fixed = ("request.auth.principal", "source.principal", "source.namespace", "source.ip")
        if value in fixed:
            return value
        for prefix in ("request.headers[", "request.auth.claims["):
            if value.startswith(prefix) and value.endswith("]") and len(value) > len(prefix) + 1:
                return value
        raise ValueError(f"{value!r}: a condition key is one of {', '.join(CONDITION_KEYS)}")

    @model_validator(mode="after")
    def _some(self) -> Condition:
        if not self.values and not self.not_values:
            raise ValueError("set values or not_values")
        return self


class Rule(SecModel):
    """Matches when `from`, `to` and `when` all match (an empty part matches everything)."""

    from_: list[From] = Field([], alias="from")
    to: list[To] = []
    when: list[Condition] = []

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Policy(SecModel):
    """An AuthorizationPolicy: DENY policies that match deny; when ALLOW policies exist, one must match."""

    name: Annotated[str, Field(min_length=1)]
    action: Literal["ALLOW", "DENY"] = "ALLOW"
    rules: list[Rule] = []  # no rules: the policy matches nothing (an ALLOW with no rules allows nothing)

    @field_validator("action", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class Jwt(SecModel):
    """Bearer JWT validation for an edge listener: signature (keys from a JWKS file, watched), issuer, audience,
    expiry. An invalid token is a 401; a missing one too, unless `required: false`."""

    issuer: Annotated[str, Field(min_length=1)]
    audiences: list[str] = []  # the token's `aud` must name one of these; empty: not checked
    jwks: Annotated[ReadPath, Field(min_length=1)]  # path of a JWKS file (JSON: {"keys": [...]})
    header: Annotated[str, Field(min_length=1)] = "authorization"  # 'Bearer TOKEN' in this header
    required: bool = True
    forward: bool = True  # pass the token on upstream
    algorithms: list[Literal["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
                             "EdDSA"]] = list(JWT_ALGORITHMS)  # type: ignore[arg-type]
    clock_skew_s: Annotated[int, Field(ge=0, le=3600)] = 60
    max_token_bytes: Annotated[int, Field(ge=64, le=65_536)] = 8_192
    watch_interval_ms: Annotated[int, Field(ge=50, le=3_600_000)] = 1_000


class RequestRate(SecModel):
    """A token bucket: `rps` requests a second, `burst` at most saved up (default: rps, at least 1)."""

    rps: Annotated[float, Field(gt=0, le=10_000_000)]
    burst: Annotated[int, Field(ge=1)] | None = None
    max_keys: Annotated[int, Field(ge=1, le=10_000_000)] = 100_000  # per identity: buckets kept (LRU)


__all__ = ["CONDITION_KEYS", "JWT_ALGORITHMS", "TLS_MODES", "ClusterTls", "Condition", "From", "Identity", "Jwt",
           "ListenerTls", "Operation", "Policy", "RequestRate", "Rule", "SecModel", "Source", "To"]
