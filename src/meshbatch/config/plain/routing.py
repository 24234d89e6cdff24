"""Where a route matches and the listener limits, in their run-time form (meshbatch.config.model.routing)."""

from __future__ import annotations

from meshbatch.config.plain.base import Plain
from meshbatch.config.plain.security import RequestRate


class Limits(Plain, frozen=True, kw_only=True):
    """Per-listener protections against slow, large or abusive clients."""

    max_header_bytes: int = 65536
    max_headers: int = 100
    max_body_bytes: int = 8388608
    header_timeout_ms: int = 10000
    idle_timeout_ms: int = 60000
    max_connections: int = 10000
    max_pipelined: int = 32
    max_buffer_bytes: int = 1048576
    send_timeout_ms: int = 30000
    max_pipelined_bytes: int = 1048576
    connection_rate: RequestRate | None = None
    identity_rate: RequestRate | None = None


class HeaderMatch(Plain, frozen=True, kw_only=True):
    name: str
    exact: str | None = None
    prefix: str | None = None
    present: bool | None = None
    invert: bool = False


METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT")


class Match(Plain, frozen=True, kw_only=True):
    host: str | list[str] | None = None
    path_prefix: str | None = None
    path: str | None = None
    methods: list[str] | None = None
    headers: list[HeaderMatch] = []
