"""HTTP/2 header blocks: the connection-specific fields HTTP/2 forbids (RFC 9113 8.2.2), the request's pseudo-header
fields, and an answer's fields as the proxy carries them (lower-case names, no pseudo-header, nothing hop-by-hop).

Shared by the client and server connections of this package: what one side refuses to send, the other refuses
to pass on.
"""

from __future__ import annotations

from typing import Final

from meshbatch.http.message import Headers

# Fields that describe one HTTP/1.1 connection: never in an HTTP/2 header block (RFC 9113 8.2.2). `te` is the
# exception when its value is exactly "trailers"; `host` becomes `:authority`.
CONNECTION_SPECIFIC: Final = frozenset({
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"transfer-encoding",
    b"upgrade",
    b"te",
    b"host",
    b"http2-settings",
    b"expect",
    b"content-length",  # framing is HTTP/2's own; a body's length is told by its DATA frames
})
TE_TRAILERS: Final = (b"te", b"trailers")

# What a received field may not be (RFC 9113 8.2.1-8.2.2): meshbatch checks received blocks itself rather than
# through h2's validation (a chain of generators that was the largest part of what h2 spent on a request head).
FORBIDDEN_RECEIVED: Final = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding",
                                       b"upgrade"})
# A field name's characters: 0x21-0x7e without the upper-case letters and without ':' (pseudo-header fields'
# names are compared whole against the few there are).
NAME_CHARACTERS: Final = bytes([c for c in range(0x21, 0x7F) if not 0x41 <= c <= 0x5A and c != 0x3A])


def field_problem(name: bytes, value: bytes) -> str:
    """Why a received (not pseudo-header) field makes its block malformed (RFC 9113 8.2.1-8.2.2), or "" when it
    does not: an empty name, a character not allowed in a name (upper case, controls, space, ':', beyond 0x7e), a
    value with NUL, CR or LF or with whitespace at either end, a connection-specific field, `te` but `trailers`."""
    if not name or name.translate(None, NAME_CHARACTERS):
        return f"invalid field name {name[:64]!r}"
    if value:
        if b"\r" in value or b"\n" in value or b"\x00" in value:
            return f"invalid character in the value of {name[:64]!r}"
        first, last = value[0], value[-1]
        if first == 0x20 or first == 0x09 or last == 0x20 or last == 0x09:
            return f"whitespace around the value of {name[:64]!r}"
    if name in FORBIDDEN_RECEIVED:
        return f"connection-specific field {name!r}"
    if name == b"te" and value.lower() != b"trailers":
        return "te other than trailers"
    return ""

# Fields a trailer section may not carry (RFC 9110 6.5.1: framing, routing, authentication, control data):
# dropped from received trailers whatever the protocol.
NOT_IN_TRAILERS: Final = CONNECTION_SPECIFIC | frozenset({
    b"trailer",
    b"authorization",
    b"proxy-authorization",
    b"set-cookie",
    b"cookie",
    b"content-type",
    b"content-encoding",
    b"content-range",
    b"cache-control",
    b"expires",
    b"age",
    b"date",
    b"location",
    b"retry-after",
    b"vary",
})


def request_block(method: bytes, target: bytes, headers: Headers, scheme: bytes) -> Headers:
    """The request's header block: pseudo-header fields first (`host` becomes `:authority`), then the other
    fields without the connection-specific ones, and `te: trailers` (gRPC's requirement; the proxy takes trailers
    whatever the caller said, and hands them on only to a caller that asked)."""
    authority = b""
    out: Headers = []
    for item in headers:
        name = item[0]
        if name in CONNECTION_SPECIFIC:
            if name == b"host" and not authority:
                authority = item[1]
            continue
        out.append(item)
    out.append(TE_TRAILERS)
    pseudo: Headers = [(b":method", method), (b":scheme", scheme), (b":path", target or b"/")]
    if authority:
        pseudo.append((b":authority", authority))
    if method == b"CONNECT":  # (not sent by the proxy; kept well-formed should a caller's reach here)
        pseudo = [(b":method", method), (b":authority", authority or target)]
    return pseudo + out


def answer_fields(block: list[tuple[bytes, bytes]]) -> tuple[int, Headers]:
    """An answer's `:status` and its other fields (h2 has validated the block: names are lower case, pseudo
    fields come first, none is connection-specific). Status 0: the block had no valid `:status`."""
    status = 0
    out: Headers = []
    for name, value in block:
        if name[:1] == b":":
            if name == b":status" and value.isdigit() and len(value) == 3:
                status = int(value)
            continue
        out.append((name, value))
    return status, out


def trailer_fields(block: list[tuple[bytes, bytes]]) -> Headers:
    """A trailer section's fields, without pseudo fields nor those a trailer may not carry."""
    return [(name, value) for name, value in block if name[:1] != b":" and name not in NOT_IN_TRAILERS]


__all__ = ["CONNECTION_SPECIFIC", "FORBIDDEN_RECEIVED", "NOT_IN_TRAILERS", "TE_TRAILERS", "answer_fields",
           "field_problem", "request_block", "trailer_fields"]
