"""The headers a request carries upstream and an answer carries back: built here only, for every exchange.

A plain request's headers (`request_headers`): hop-by-hop ones removed (but `TE: trailers`, passed on as Envoy does:
it says the caller takes trailers, which gRPC needs and the exchange checks) (and those named in Connection, never a
protected one: see http/fields.py), the TCP peer appended to `x-forwarded-for`, `x-forwarded-proto` passed on
when the parser kept it (it came through trusted hops) and set to the connection's scheme otherwise, `via`
appended, `x-request-id` passed on. What a listener trusts of the incoming ones the parser has already applied
(http/forwarded.py): on an edge listener with no trusted hops a client's `x-forwarded-for` never arrives here, so
the peer replaces it.

A batch (`batch_headers`): the cluster's name as Host, the codec's headers, `via`. Answers (`response_headers`):
hop-by-hop removed (by the upstream connection's reader), `via` appended.
"""

from __future__ import annotations

from typing import Final, cast

from meshbatch.http.fields import PLAIN_CONNECTION
from meshbatch.http.message import Headers, Request, Response
from meshbatch.http.request_head import forwarding
from meshbatch.http.serialize import HOP_BY_HOP, connection_tokens
from meshbatch.http2.headers import TE_TRAILERS

VIA: Final = b"1.1 meshbatch"
# grpc-timeout too: each attempt sends the time left to it instead (layers/timeout.py upstream_timeout)
_DROP_UPSTREAM: Final = HOP_BY_HOP | {b"x-forwarded-for", b"x-forwarded-proto", b"via", b"grpc-timeout"}


def request_headers(request: Request, via: bool = True, host: str = "") -> Headers:
    """The end-to-end request headers plus the ones a proxy adds, in one pass.

    `host` is sent when an HTTP/1.0 caller sent no Host: the HTTP/1.1 request upstream must have one.
    """
    out: Headers = []
    # As objects: the compiled build would unpack each (bytes, bytes) into a C struct and box it again, a new tuple
    # (the head upstream is encoded faster while its fields are the very tuples the reader kept: http/serialize.py).
    kept = cast("list[tuple[bytes, ...]]", out)
    xff = b""
    prior_via = b""
    proto = request.scheme
    extra: frozenset[bytes] | None = None
    te = False
    for item in cast("list[tuple[bytes, ...]]", request.headers):
        name = item[0]
        if name in _DROP_UPSTREAM:
            if name == b"x-forwarded-for":
                xff = xff + b", " + item[1] if xff else item[1]
            elif name == b"via":
                prior_via = prior_via + b", " + item[1] if prior_via else item[1]
            elif name == b"x-forwarded-proto":
                proto = item[1]
            elif name == b"connection" and item[1] not in PLAIN_CONNECTION:
                extra = connection_tokens(request.headers)
            elif name == b"te" and item[1].lower().find(b"trailers") >= 0 and request.version != b"1.0":
                te = True
            continue
        kept.append(item)
    if extra:  # (the parser applied them already; a request built elsewhere gets the same rule)
        out = [item for item in out if item[0] not in extra]
    if te:
        out.append(TE_TRAILERS)
    if request.version == b"1.0" and request.header(b"host") is None:
        out.append((b"host", host.encode()))
    if via and not xff and not prior_via:  # (the same three tuples for every such request: http/request_head.py)
        cast("list[tuple[bytes, ...]]", out).extend(forwarding(request.peer, proto, VIA).fields)
        return out
    peer = request.peer.encode()
    out.append((b"x-forwarded-for", xff + b", " + peer if xff else peer))
    out.append((b"x-forwarded-proto", proto))
    if via:
        out.append((b"via", prior_via + b", " + VIA if prior_via else VIA))
    return out


def response_headers(response: Response, via: bool = True) -> Headers:
    """The upstream's answer headers (the client already dropped hop-by-hop ones) plus `via`."""
    headers = response.headers
    if via:
        headers.append((b"via", VIA))
    return headers


def batch_headers(host: str, headers: Headers, via: bool = True) -> Headers:
    """A batch's headers: Host (the cluster's name), the codec's and the batch's own, `via`."""
    out: Headers = [(b"host", host.encode()), *headers]
    if via:
        out.append((b"via", VIA))
    return out


__all__ = ["VIA", "batch_headers", "request_headers", "response_headers"]
