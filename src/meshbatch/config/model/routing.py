"""Where a route matches and the listener limits: `Limits`, `Match`, `HeaderMatch`."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator, model_validator

from meshbatch.config.model.base import Millis, Model, PositiveInt
from meshbatch.config.model.security import RequestRate


class Limits(Model):
    """Per-listener protections against slow, large or abusive clients."""

    max_header_bytes: Annotated[int, Field(ge=256, le=1_048_576)] = 65_536
    max_headers: Annotated[int, Field(ge=1, le=10_000)] = 100  # header fields (and, apart, trailer fields): 431
    max_body_bytes: Annotated[int, Field(ge=0)] = 8_388_608
    header_timeout_ms: Millis = 10_000
    idle_timeout_ms: Millis = 60_000
    max_connections: PositiveInt = 10_000
    max_pipelined: Annotated[int, Field(ge=1, le=1024)] = 32
    # Memory per connection (Envoy's per-connection buffer limit): answers larger than this stream to the
    # client, and reading from their upstream pauses while this much waits to be sent.
    max_buffer_bytes: Annotated[int, Field(ge=4096, le=1_073_741_824)] = 1_048_576
    send_timeout_ms: Millis = 30_000  # output the client takes none of for this long: the connection is aborted
    max_pipelined_bytes: Annotated[int, Field(ge=1024)] = 1_048_576  # bodies of requests read, not yet served
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
