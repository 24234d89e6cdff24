"""HTTP/2 header blocks: the connection-specific fields HTTP/2 forbids (RFC 9113 8.2.2), the request's pseudo-header
fields, and an answer's fields as the proxy carries them (lower-case names, no pseudo-header, nothing hop-by-hop).

Shared by the client and server connections of this package: what one side refuses to send, the other refuses
to pass on.
"""

from __future__ import annotations

from typing import Final

from meshbatch.errors import BadGateway
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


_GOOD_NAMES: Final[set[bytes]] = set()  # names that passed (not `te`): their values are all left to check
MAX_GOOD_NAMES: Final = 4096  # beyond it the set starts over


def field_problem(name: bytes, value: bytes) -> str:
    """Why a received (not pseudo-header) field makes its block malformed (RFC 9113 8.2.1-8.2.2), or "" when it
    does not: an empty name, a character not allowed in a name (upper case, controls, space, ':', beyond 0x7e), a
    value with NUL, CR or LF or with whitespace at either end, a connection-specific field, `te` but `trailers`.
    A name seen to pass before is not checked again (blocks repeat the same few names)."""
    known = name in _GOOD_NAMES
    if not known and (not name or name.translate(None, NAME_CHARACTERS)):
        return f"invalid field name {name[:64]!r}"
    if value:
        if 13 in value or 10 in value or 0 in value:  # CR, LF, NUL: bytes found natively (a bytes operand is
            # first tried as an int: a TypeError formatted and dropped for each)
            return f"invalid character in the value of {name[:64]!r}"
        first, last = value[0], value[-1]
        if first == 0x20 or first == 0x09 or last == 0x20 or last == 0x09:
            return f"whitespace around the value of {name[:64]!r}"
    if known:
        return ""
    if name in FORBIDDEN_RECEIVED:
        return f"connection-specific field {name!r}"
    if name == b"te":
        return "" if value.lower() == b"trailers" else "te other than trailers"
    if len(_GOOD_NAMES) >= MAX_GOOD_NAMES:
        _GOOD_NAMES.clear()
    _GOOD_NAMES.add(name)
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


def answer_fields(block: list[tuple[bytes, bytes]]) -> tuple[int, Headers, int]:
    """An answer's `:status`, its other fields but the connection-specific ones, and its `content-length` (-1:
    none). The block is checked here, not by h2 (RFC 9113 8.2-8.3: `:status` once, first, no other pseudo-header
    field, names and values as `field_problem` wants them): a malformed one is a BadGateway."""
    status = 0
    length = -1
    regular = False
    out: Headers = []
    for name, value in block:
        if name[:1] == b":":
            if name != b":status" or status or regular:
                raise BadGateway("bad_upstream_response", "HTTP/2: a malformed answer (pseudo-header fields)")
            status = int(value) if value.isdigit() and len(value) == 3 else -1
            continue
        regular = True
        problem = field_problem(name, value)
        if problem:
            raise BadGateway("bad_upstream_response", f"HTTP/2: a malformed answer ({problem})")
        if name in CONNECTION_SPECIFIC:
            if name == b"content-length" and value.isdigit():
                length = int(value)
            continue
        out.append((name, value))
    return max(status, 0), out, length


def trailer_fields(block: list[tuple[bytes, bytes]]) -> Headers:
    """A trailer section's fields, without those a trailer may not carry; a pseudo-header field or a malformed
    field is a BadGateway."""
    out: Headers = []
    for name, value in block:
        problem = "a pseudo-header field" if name[:1] == b":" else field_problem(name, value)
        if problem:
            raise BadGateway("bad_upstream_response", f"HTTP/2: malformed trailers ({problem})")
        if name not in NOT_IN_TRAILERS:
            out.append((name, value))
    return out


__all__ = ["CONNECTION_SPECIFIC", "FORBIDDEN_RECEIVED", "NOT_IN_TRAILERS", "TE_TRAILERS", "answer_fields",
           "field_problem", "trailer_fields"]
