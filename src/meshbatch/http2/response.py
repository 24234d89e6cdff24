"""An answer as HTTP/2 header fields. Pure.

HTTP/2 carries no connection-specific field (RFC 9113 8.2.2): `connection`, `keep-alive`, `proxy-connection`,
`transfer-encoding` and `upgrade` are dropped from an answer (an HTTP/1.1 upstream's), and so is `te`. Framing
is the stream's own, so a `content-length` is the proxy's: the body's length when it has it all, the upstream's
when it streams the body with one, none otherwise.
"""

from __future__ import annotations

from typing import Final

from meshbatch.http.message import Headers, Response
from meshbatch.http.serialize import NO_BODY_STATUSES
from meshbatch.http2.hpack_fields import never_indexed

CONNECTION_SPECIFIC: Final = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding",
                                        b"upgrade", b"te", b"content-length"})


# the decimal text of the numbers most answers carry (statuses, small lengths), made once: the same bytes object
# each time, which the encoder's kept fields find by identity
_DECIMAL: Final = [b"%d" % n for n in range(1024)]


def decimal(n: int) -> bytes:
    return _DECIMAL[n] if 0 <= n < 1024 else b"%d" % n


def response_fields(response: Response, request_id: bytes, length: int, head: bool) -> Headers:
    """The answer's head: `:status`, its end-to-end fields, `x-request-id` (when given) and `content-length`
    (`length` >= 0, not for statuses that have no body, and not for an answer to HEAD without one)."""
    status = response.status
    out: Headers = [(b":status", decimal(status))]
    drop = CONNECTION_SPECIFIC
    for name, value in response.headers:
        name = name.lower()
        if name not in drop and name[:1] != b":":
            out.append((name, value))
    if request_id:  # unique to each answer: kept out of the HPACK table, where it would only push others out
        out.append(never_indexed(b"x-request-id", request_id))
    if length >= 0 and status not in NO_BODY_STATUSES and status >= 200 and (length or not head):
        out.append((b"content-length", decimal(length)))
    return out


def trailer_fields_out(trailers: Headers) -> Headers:
    """An answer's trailers: end-to-end fields only, never a pseudo-header."""
    drop = CONNECTION_SPECIFIC
    return [(name.lower(), value) for name, value in trailers if name.lower() not in drop and name[:1] != b":"]


def sends_body(response: Response, head: bool) -> bool:
    return not head and response.status not in NO_BODY_STATUSES and response.status >= 200


__all__ = ["CONNECTION_SPECIFIC", "decimal", "response_fields", "sends_body", "trailer_fields_out"]
