"""The configuration as frozen, typed objects.

Every key a user can write is a field here. Models forbid unknown keys (the loader turns those errors into
"did you mean" hints) and are frozen: a reload builds a new tree and swaps one reference.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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
        return self


class Route(Model):
    name: Annotated[str, Field(min_length=1)]
    match: Match = Match()
    cluster: Annotated[str, Field(min_length=1)]
    timeout_ms: Millis = 15_000
    batch: Batch | None = None


class Listener(Model):
    name: Annotated[str, Field(min_length=1)]
    listen: str
    routes: list[Route] = []
    limits: Limits = Limits()
    via: bool = True
    request_id_in_response: bool = True

    _listen = field_validator("listen")(classmethod(lambda cls, v: _check_listen(v)))


class EndpointSpec(Model):
    address: str
    weight: Annotated[int, Field(ge=1, le=1000)] = 1
    metadata: dict[str, str] = {}

    _address = field_validator("address")(classmethod(lambda cls, v: _check_listen(v)))


class Cluster(Model):
    name: Annotated[str, Field(min_length=1)]
    endpoints: list[str | EndpointSpec] = Field(min_length=1)
    lb: str = "round_robin"
    connect_timeout_ms: Millis = 1_000
    max_connections: PositiveInt = 1_024
    max_pending: NonNegInt = 1_024
    idle_timeout_ms: Millis = 30_000
    max_response_bytes: PositiveInt = 67_108_864

    @field_validator("endpoints")
    @classmethod
    def _endpoints(cls, value: list[str | EndpointSpec]) -> list[str | EndpointSpec]:
        for item in value:
            if isinstance(item, str):
                _check_listen(item)
        return value


class Admin(Model):
    listen: str = "127.0.0.1:9901"

    _listen = field_validator("listen")(classmethod(lambda cls, v: _check_listen(v)))


class Config(Model):
    admin: Admin | None = Admin()
    listeners: list[Listener] = Field(min_length=1)
    clusters: list[Cluster] = []
    drain_timeout_ms: Millis = 15_000


__all__ = [
    "METHODS",
    "Adaptive",
    "Admin",
    "Batch",
    "Cluster",
    "Config",
    "EndpointSpec",
    "HeaderMatch",
    "Limits",
    "Listener",
    "Match",
    "Route",
]
