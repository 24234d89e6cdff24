"""Listeners (their routes: meshbatch.config.model.routes)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from meshbatch.config.model.base import Model, _check_listen
from meshbatch.config.model.routes import AnyRoute
from meshbatch.config.model.routing import Limits
from meshbatch.config.model.security import Jwt, ListenerTls, Policy


class PathNormalization(Model):
    """How request paths are normalised, once, before routing, policies and forwarding (docs/data-plane.md)."""

    normalize: bool = True  # RFC 3986 6.2.2: unreserved escapes decoded, hex upper-cased, `.`/`..` resolved
    merge_slashes: bool = True  # `//` -> `/`
    escaped_slashes: Literal["reject", "keep", "unescape"] = "reject"  # %2F and %5C (Envoy's escaped slash action)
    path_parameters: Literal["reject", "keep"] = "reject"  # `;` in a path (Tomcat/Spring cut `/admin;x` to `/admin`)


class Listener(Model):
    name: Annotated[str, Field(min_length=1)]
    listen: str
    routes: list[AnyRoute] = []  # each of the kind its keys make
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
