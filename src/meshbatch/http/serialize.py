"""Bytes on the wire: response heads for downstream, request heads for upstream, local replies.

Each message is built once and written with its body in a single `transport.write`: many small writes cost
several times the throughput on loopback.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from http import HTTPStatus
from typing import Final, cast

from meshbatch.errors import Overloaded, ProxyError
from meshbatch.http.chunked import chunk
from meshbatch.http.fields import protected
from meshbatch.http.message import Headers, Response
from meshbatch.http.request_head import known_block, known_tail

# Final: the compiled module keeps these in C statics, not in its globals dict (a look-up per use otherwise).
_STATUS_LINES: Final[dict[int, bytes]] = {
    s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus
}

# Hop-by-hop headers (RFC 9110 7.6.1) and the ones the proxy always sets itself.
HOP_BY_HOP: Final = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"expect",
        b"content-length",
    }
)

NO_BODY_STATUSES: Final = frozenset({204, 304})


def status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        line = f"HTTP/1.1 {status} Unknown\r\n".encode()
    return line


def field_tokens(headers: Headers, field: bytes) -> set[bytes]:
    """The comma-separated tokens of every `field` field, in lower case (empty ones left out)."""
    tokens: set[bytes] = set()
    for name, value in headers:
        if name == field:
            for token in value.split(b","):
                token = token.strip(b" \t").lower()
                if token:
                    tokens.add(token)
    return tokens


def connection_tokens(headers: Headers) -> frozenset[bytes]:
    """Header names listed in Connection: they are hop-by-hop too. Never a protected one (Host, content-*, the
    forwarding and tracing fields, x-meshbatch-*: see http/fields.py): such a nomination is ignored."""
    return frozenset(token for token in field_tokens(headers, b"connection") if not protected(token))


_PLAIN_CONNECTION = frozenset({b"keep-alive", b"close", b"Keep-Alive", b"Close", b"upgrade"})


def end_to_end(headers: Headers) -> Headers:
    """The headers without hop-by-hop ones (including those named in Connection)."""
    extra: frozenset[bytes] | None = None
    out: Headers = []
    for item in headers:
        name = item[0]
        if name in HOP_BY_HOP:
            if name == b"connection" and item[1] not in _PLAIN_CONNECTION:
                extra = connection_tokens(headers)
            continue
        out.append(item)
    if extra:
        out = [item for item in out if item[0] not in extra]
    return out


def _fields(parts: list[bytes], headers: Headers, start: int = 0, stop: int = -1) -> None:
    """`name: value` lines onto `parts` (pieces joined once: cheaper than formatting each line; appended one by
    one: a tuple of four per line, extended, costs several times that in the compiled build), from `start` on
    (up to `stop`, when given)."""
    for i in range(start, len(headers) if stop < 0 else stop):
        name, value = headers[i]
        parts.append(name)
        parts.append(b": ")
        parts.append(value)
        parts.append(b"\r\n")


def field_lines(fields: Sequence[tuple[bytes, bytes]]) -> bytes:
    """`name: value` lines of `fields`, as a head carries them."""
    parts: list[bytes] = []
    _fields(parts, list(fields))
    return b"".join(parts)


def _head(status: int, headers: Headers, request_id: bytes, known: tuple[tuple[bytes, bytes], ...] = (),
          block: bytes = b"") -> list[bytes]:
    """The status line and the header lines. When `headers` begins with the very tuples of `known` (an upstream's
    answer: see Response.head_block), their lines are `block`, encoded once for every answer with that head."""
    parts = [status_line(status)]
    count = len(known)
    if count > len(headers):
        count = 0
    # As objects: the compiled build would unpack each (bytes, bytes) into a C struct and box it again, a new tuple.
    rows = cast("list[object]", headers)
    same = cast("tuple[object, ...]", known)
    for i in range(count):
        if rows[i] is not same[i]:
            count = 0
            break
    if count:
        parts.append(block)
    _fields(parts, headers, count)
    if request_id:
        parts.append(b"x-request-id: ")
        parts.append(request_id)
        parts.append(b"\r\n")
    return parts


# `content-length: N\r\n` of the small lengths, made on first use (most bodies of RPC-style calls are short).
_LENGTH_FIELDS: Final[list[bytes]] = [b""] * 4096


def length_field(length: int) -> bytes:
    """The line `content-length: <length>\\r\\n`."""
    if length < 4096:
        field = _LENGTH_FIELDS[length]
        if not field:
            field = _LENGTH_FIELDS[length] = b"content-length: %d\r\n" % length
        return field
    return b"content-length: %d\r\n" % length


def encode_response(response: Response, keep_alive: bool, head: bool = False, request_id: bytes = b"") -> bytes:
    """Status line, headers, framing and body in one buffer. Content-Length framed, but for an answer with
    trailers (the exchange keeps them only for a caller that said `TE: trailers`): chunked, with its trailer
    section."""
    status = response.status
    bodied = status != 204 and status != 304  # (NO_BODY_STATUSES, compared natively)
    if response.trailers and not head and status >= 200 and bodied:
        return _with_trailers(response, response.trailers, keep_alive, request_id)
    parts = _head(status, response.headers, request_id, response.head_fields, response.head_block)
    body = response.body
    # An upstream's answer to HEAD arrives without its body, so its length is unknown here: claim none
    # (RFC 9110 8.6 allows that) rather than a wrong 0.
    if bodied and not 100 <= status < 200 and (body or not head):
        parts.append(length_field(len(body)))
    parts.append(b"\r\n" if keep_alive else b"connection: close\r\n\r\n")
    if body and not head and bodied:
        parts.append(body)
    return b"".join(parts)


def _with_trailers(response: Response, trailers: Headers, keep_alive: bool, request_id: bytes) -> bytes:
    parts = _head(response.status, response.headers, request_id)
    parts += (b"transfer-encoding: chunked\r\ntrailer: ", b", ".join(dict.fromkeys(name for name, _ in trailers)),
              b"\r\n" if keep_alive else b"\r\nconnection: close\r\n", b"\r\n")
    if response.body:
        parts.append(chunk(response.body))
    parts.append(b"0\r\n")
    _fields(parts, trailers)
    parts.append(b"\r\n")
    return b"".join(parts)


def encode_stream_head(response: Response, length: int, chunked: bool, keep_alive: bool,
                       request_id: bytes = b"") -> bytes:
    """The head of an answer whose body follows as it arrives (http/stream.py): framed by `length` when the
    upstream gave one (>= 0), else chunked (`chunked`: an HTTP/1.1 caller), else by the connection closing
    (an HTTP/1.0 caller; `keep_alive` must then be False)."""
    parts = _head(response.status, response.headers, request_id)
    if length >= 0:
        parts += (b"content-length: ", str(length).encode(), b"\r\n")
    elif chunked:
        parts.append(b"transfer-encoding: chunked\r\n")
    parts.append(b"\r\n" if keep_alive else b"connection: close\r\n\r\n")
    return b"".join(parts)


def encode_request(method: bytes, target: bytes, headers: Headers, body: bytes) -> bytes:
    """Request line, headers, framing and body in one buffer. While `headers` begins with the very tuples of a
    header section the reader kept (http/request_head.py), their lines are its `block`, encoded once; so are the
    forwarding fields it may end with."""
    parts = [method, b" ", target, b" HTTP/1.1\r\n"]
    head = known_block(headers)
    start = 0
    if head is not None:
        parts.append(head.block)
        start = len(head.fields)
    tail = known_tail(headers)
    if tail is not None and len(headers) - 3 >= start:
        _fields(parts, headers, start, len(headers) - 3)
        parts.append(tail.block)
    else:
        _fields(parts, headers, start)
    if body or method not in (b"GET", b"HEAD", b"DELETE", b"OPTIONS"):
        parts.append(length_field(len(body)))
    parts.append(b"\r\n")
    if body:
        parts.append(body)
    return b"".join(parts)


def encode_upload_head(method: bytes, target: bytes, headers: Headers, length: int) -> bytes:
    """The head of a request whose body follows as it arrives (http/upload.py): framed by `length` when the
    caller gave one (>= 0), else chunked."""
    parts = [method, b" ", target, b" HTTP/1.1\r\n"]
    _fields(parts, headers)
    parts.append(b"content-length: %d\r\n\r\n" % length if length >= 0 else b"transfer-encoding: chunked\r\n\r\n")
    return b"".join(parts)


JSON = (b"content-type", b"application/json")


def local_reply(error: ProxyError) -> Response:
    """The answer the proxy gives itself: status, a small JSON body, and the error's flag and reason."""
    headers: Headers = [JSON]
    if isinstance(error, Overloaded):
        headers.append((b"retry-after", str(max(1, math.ceil(error.retry_after))).encode()))  # never early
    response = Response(error.status, headers, error.body())
    response.flag = error.flag
    response.reason = error.reason
    return response


__all__ = [
    "HOP_BY_HOP",
    "JSON",
    "encode_request",
    "encode_response",
    "encode_stream_head",
    "encode_upload_head",
    "end_to_end",
    "field_lines",
    "field_tokens",
    "length_field",
    "local_reply",
    "status_line",
]
