"""gRPC answers as `Response` objects: a unary answer (headers, one framed message, trailers with grpc-status 0)
and a trailers-only answer for a status (HTTP 200, content-type application/grpc, grpc-status and grpc-message
in the one header block, no body), with grpc-message percent-encoded as doc/PROTOCOL-HTTP2.md says.

`error_reply` is the answer to a gRPC caller of an error the proxy makes itself (mapping.py decides the status).
`status_of` reads an upstream's gRPC answer: its status and message, from the trailers or a trailers-only head.
"""

from __future__ import annotations

import math
import re

from meshbatch.errors import Overloaded, ProxyError
from meshbatch.grpc import mapping
from meshbatch.grpc.framing import frame
from meshbatch.grpc.status import GrpcStatus
from meshbatch.http.message import Headers, Response

CONTENT_TYPE = b"application/grpc"
GRPC_TYPE = (b"content-type", CONTENT_TYPE)
STATUS, MESSAGE = b"grpc-status", b"grpc-message"
PUSHBACK = b"grpc-retry-pushback-ms"  # how long a gRPC client's retry policy should wait (gRFC A6)
MAX_MESSAGE = 1024  # characters of a grpc-message the proxy writes
_STATUS_VALUES = [str(code).encode() for code in range(17)]
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")
_UNRESERVED = frozenset(range(0x20, 0x7F)) - {ord("%")}


def encode_message(text: str) -> bytes:
    """grpc-message's Percent-Encoded form: UTF-8, each byte outside 0x20-0x7E, and `%`, as %XX."""
    data = text.encode("utf-8")
    if data.isascii() and b"%" not in data and not _CONTROL.search(data):
        return data
    return b"".join(bytes((byte,)) if byte in _UNRESERVED else b"%%%02X" % byte for byte in data)


def decode_message(value: bytes) -> str:
    """A grpc-message's text. Malformed escapes are kept as they are, as the spec asks of a receiver."""
    if b"%" not in value:
        return value.decode("utf-8", "replace")
    out = bytearray()
    i, n = 0, len(value)
    while i < n:
        byte = value[i]
        if byte == 0x25 and i + 2 < n and _hex(value[i + 1:i + 3]):
            out.append(int(value[i + 1:i + 3], 16))
            i += 3
        else:
            out.append(byte)
            i += 1
    return out.decode("utf-8", "replace")


def _hex(pair: bytes) -> bool:
    return len(pair) == 2 and all(c in b"0123456789abcdefABCDEF" for c in pair)


def status_fields(status: GrpcStatus | int, message: str = "") -> Headers:
    fields: Headers = [(STATUS, _STATUS_VALUES[status] if 0 <= status <= 16 else str(int(status)).encode())]
    if message:
        fields.append((MESSAGE, encode_message(message[:MAX_MESSAGE])))
    return fields


def trailers_only(status: GrpcStatus | int, message: str = "", extra: Headers | None = None) -> Response:
    """A status without a message: one header block that ends the stream (the spec's Trailers-Only)."""
    headers: Headers = [GRPC_TYPE, *status_fields(status, message)]
    if extra:
        headers.extend(extra)
    return Response(200, headers)


def unary(message: bytes, metadata: Headers | None = None, trailing: Headers | None = None) -> Response:
    """A successful unary answer: headers, one framed message, trailers with grpc-status 0."""
    headers: Headers = [GRPC_TYPE]
    if metadata:
        headers.extend(metadata)
    response = Response(200, headers, frame(message))
    trailers: Headers = [(STATUS, b"0")]
    if trailing:
        trailers.extend(trailing)
    response.trailers = trailers
    return response


def error_reply(error: ProxyError, extra: Headers | None = None) -> Response:
    """The trailers-only answer to a gRPC caller of an error the proxy makes itself, with its reason and flag
    for logs and metrics. A full queue or a rate limit carries its Retry-After as grpc-retry-pushback-ms."""
    code = mapping.for_error(error)
    fields: Headers = []
    if isinstance(error, Overloaded):
        fields.append((PUSHBACK, str(max(1000, math.ceil(error.retry_after * 1000))).encode()))
    if extra:
        fields.extend(extra)
    message = f"{error.reason}: {error.detail}" if error.detail else error.reason
    response = trailers_only(code, message, fields)
    response.flag = error.flag
    response.reason = error.reason
    return response


def status_of(response: Response) -> tuple[int, str] | None:
    """(grpc-status, grpc-message) of a gRPC answer, from its trailers or a trailers-only head; None when it
    carries no grpc-status. A grpc-status that is not a number reads as UNKNOWN."""
    for block in (response.trailers, response.headers):
        if not block:
            continue
        code: int | None = None
        text = ""
        for name, value in block:
            if name == STATUS and code is None:
                code = int(value) if value.isdigit() and len(value) <= 9 else int(GrpcStatus.UNKNOWN)
            elif name == MESSAGE and not text:
                text = decode_message(value)
        if code is not None:
            return code, text
    return None


__all__ = ["CONTENT_TYPE", "GRPC_TYPE", "MESSAGE", "PUSHBACK", "STATUS", "decode_message", "encode_message",
           "error_reply", "status_fields", "status_of", "trailers_only", "unary"]
