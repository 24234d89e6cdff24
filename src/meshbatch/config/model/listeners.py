"""Listeners (their routes: meshbatch.config.model.routes)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from meshbatch.config.model.base import Millis, Model, _check_listen
from meshbatch.config.model.routes import AnyRoute
from meshbatch.config.model.routing import Limits
from meshbatch.config.model.security import Jwt, ListenerTls, Policy


class PathNormalization(Model):
    """How request paths are normalised, once, before routing, policies and forwarding (docs/data-plane.md)."""

    normalize: bool = True  # RFC 3986 6.2.2: unreserved escapes decoded, hex upper-cased, `.`/`..` resolved
    merge_slashes: bool = True  # `//` -> `/`
    escaped_slashes: Literal["reject", "keep", "unescape"] = "reject"  # %2F and %5C (Envoy's escaped slash action)
    path_parameters: Literal["reject", "keep"] = "reject"  # `;` in a path (Tomcat/Spring cut `/admin;x` to `/admin`)


class Http2(Model):
    """A listener's HTTP/2 connections: the SETTINGS they advertise and the limits that refuse HTTP/2's attacks
    (docs/security.md, "HTTP/2"). The header list limit is the listener's `limits.max_header_bytes` (431 beyond
    it; a header block that decodes to more than twice that is an HPACK bomb and closes the connection)."""

    max_concurrent_streams: Annotated[int, Field(ge=1, le=10_000)] = 100
    initial_window_size: Annotated[int, Field(ge=65_535, le=2_147_483_647)] = 262_144  # per stream
    connection_window_size: Annotated[int, Field(ge=65_535, le=2_147_483_647)] = 1_048_576
    max_frame_size: Annotated[int, Field(ge=16_384, le=16_777_215)] = 16_384
    header_table_size: Annotated[int, Field(ge=0, le=65_536)] = 4_096  # HPACK dynamic table (decoder side)
    max_streams_per_connection: Annotated[int, Field(ge=0)] = 0  # then GOAWAY NO_ERROR; 0: no limit
    max_resets: Annotated[int, Field(ge=1)] = 100  # RST_STREAM from the client per window (rapid reset)
    max_settings: Annotated[int, Field(ge=1)] = 50  # SETTINGS frames per window
    max_pings: Annotated[int, Field(ge=1)] = 100  # PING frames per window
    max_empty_frames: Annotated[int, Field(ge=1)] = 10  # empty DATA frames in a row
    window_ms: Millis = 10_000  # the window of the per-window limits


class Listener(Model):
    name: Annotated[str, Field(min_length=1)]
    listen: str
    routes: list[AnyRoute] = []  # each of the kind its keys make
    # auto: HTTP/2 by its preface (plaintext) or by ALPN (TLS), else HTTP/1.1; http1 or http2: that one only
    codec: Literal["auto", "http1", "http2"] = "auto"
    http2: Http2 = Http2()
    limits: Limits = Limits()
    via: bool = True
    request_id_in_response: bool = True
    reuse_port: bool = False  # SO_REUSEPORT: another process may bind the same address (drain handover)
    tls: ListenerTls | None = None  # mTLS (meshbatch.security); absent: plaintext
    policies: list[Policy] = []  # authorization of every request of the listener, before routing
    jwt: Jwt | None = None  # bearer JWT validation (edge listeners)
    path_normalization: PathNormalization = PathNormalization()
    # Forwarded-header trust (Envoy's meaning; docs/data-plane.md "Forwarded headers"): the client address is the
    # TCP peer, or with N trusted hops the Nth X-Forwarded-For entry from the right.
    xff_num_trusted_hops: Annotated[int, Field(ge=0, le=16)] = 0
    edge: bool = False  # faces callers outside the mesh: their forwarding, request-id and trace headers are not kept
    preserve_external_request_id: bool = False  # (edge) keep a caller's x-request-id
    preserve_external_trace: bool = False  # (edge) keep a caller's traceparent/tracestate

    _listen = field_validator("listen")(classmethod(lambda cls, v: _check_listen(v)))
