"""Listeners in their run-time form (meshbatch.config.model.listeners)."""

from __future__ import annotations

from typing import Literal

from meshbatch.config.plain.base import Plain
from meshbatch.config.plain.routes import AnyRoute
from meshbatch.config.plain.routing import Limits
from meshbatch.config.plain.security import Jwt, ListenerTls, Policy


class PathNormalization(Plain, frozen=True, kw_only=True):
    """How request paths are normalised, once, before routing, policies and forwarding (docs/data-plane.md)."""

    normalize: bool = True
    merge_slashes: bool = True
    escaped_slashes: Literal["reject", "keep", "unescape"] = "reject"
    path_parameters: Literal["reject", "keep"] = "reject"


class Http2(Plain, frozen=True, kw_only=True):
    """A listener's HTTP/2 connections: the SETTINGS they advertise and the limits that refuse HTTP/2"s attacks
    (docs/security.md, "HTTP/2"). The header list limit is the listener's `limits.max_header_bytes` (431 beyond
    it; a header block that decodes to more than twice that is an HPACK bomb and closes the connection)."""

    max_concurrent_streams: int = 100
    initial_window_size: int = 262144
    connection_window_size: int = 1048576
    max_frame_size: int = 16384
    header_table_size: int = 4096
    max_streams_per_connection: int = 0
    max_resets: int = 100
    max_settings: int = 50
    max_pings: int = 100
    max_empty_frames: int = 10
    window_ms: int = 10000


class Listener(Plain, frozen=True, kw_only=True):
    name: str
    listen: str
    routes: list[AnyRoute] = []  # each of the kind its keys make (its `kind` tag)
    codec: Literal["auto", "http1", "http2"] = "auto"
    http2: Http2 = Http2()
    limits: Limits = Limits()
    via: bool = True
    request_id_in_response: bool = True
    reuse_port: bool = False
    tls: ListenerTls | None = None
    policies: list[Policy] = []
    jwt: Jwt | None = None
    path_normalization: PathNormalization = PathNormalization()
    xff_num_trusted_hops: int = 0
    edge: bool = False
    preserve_external_request_id: bool = False
    preserve_external_trace: bool = False
