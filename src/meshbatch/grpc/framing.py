"""gRPC message framing (the "Length-Prefixed-Message" of doc/PROTOCOL-HTTP2.md): a compressed flag byte, a
4-byte big-endian length, the message.

Reading is bounded: a message longer than `max_size` is refused before any byte of it is copied
(RESOURCE_EXHAUSTED, as gRPC answers a message over its receive limit), and so is a gzip message whose
decompressed size would exceed it (the output is produced at most `max_size + 1` bytes at a time, so a small
compressed bomb costs no memory). A compressed flag without a `grpc-encoding` (or with `identity`) is INTERNAL;
an encoding other than gzip is UNIMPLEMENTED, as the protocol says of an algorithm the receiver does not support.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

from meshbatch.grpc.status import GrpcStatus

PREFIX = 5
DEFAULT_MAX_SIZE = 4 * 1024 * 1024  # gRPC's default receive limit
SUPPORTED_ENCODINGS = (b"identity", b"gzip")


class FramingError(Exception):
    """A gRPC body that cannot be read: the status and message to answer it with."""

    def __init__(self, status: GrpcStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def frame(message: bytes, compressed: bool = False) -> bytes:
    """One length-prefixed message."""
    return (b"\x01" if compressed else b"\x00") + len(message).to_bytes(4, "big") + message


def _gunzip(data: bytes, max_size: int) -> bytes:
    inflater = zlib.decompressobj(wbits=31)  # gzip header and trailer
    try:
        out = inflater.decompress(data, max_size + 1)
    except zlib.error as exc:
        raise FramingError(GrpcStatus.INTERNAL, f"a gzip message cannot be decompressed ({exc})") from None
    if len(out) > max_size:
        raise FramingError(GrpcStatus.RESOURCE_EXHAUSTED,
                           f"a gzip message decompresses to more than {max_size} bytes")
    if not inflater.eof:
        raise FramingError(GrpcStatus.INTERNAL, "a gzip message is truncated")
    return out


def _decompress(data: bytes, encoding: bytes | None, max_size: int) -> bytes:
    name = (encoding or b"identity").strip().lower()
    if name == b"gzip":
        return _gunzip(data, max_size)
    if name == b"identity":
        raise FramingError(GrpcStatus.INTERNAL, "a message has the compressed flag but no grpc-encoding")
    raise FramingError(GrpcStatus.UNIMPLEMENTED,
                       f"grpc-encoding {name.decode('latin-1')!r} is not supported (identity, gzip)")


def messages(body: bytes, encoding: bytes | None = None,
             max_size: int = DEFAULT_MAX_SIZE) -> Iterator[bytes]:
    """Each message of a body, decompressed; FramingError for a truncated or oversized one."""
    pos = 0
    end = len(body)
    while pos < end:
        if end - pos < PREFIX:
            raise FramingError(GrpcStatus.INTERNAL, "a message prefix is truncated")
        flag = body[pos]
        length = int.from_bytes(body[pos + 1:pos + PREFIX], "big")
        pos += PREFIX
        if flag > 1:
            raise FramingError(GrpcStatus.INTERNAL, f"a message has the flag byte {flag}, expected 0 or 1")
        if length > max_size:
            raise FramingError(GrpcStatus.RESOURCE_EXHAUSTED,
                               f"a message of {length} bytes is larger than the limit of {max_size}")
        if length > end - pos:
            raise FramingError(GrpcStatus.INTERNAL, f"a message claims {length} bytes, {end - pos} are left")
        data = body[pos:pos + length]
        pos += length
        yield _decompress(data, encoding, max_size) if flag else data


def unary(body: bytes, encoding: bytes | None = None, max_size: int = DEFAULT_MAX_SIZE) -> bytes:
    """The one message of a unary request or response; none or several is INTERNAL."""
    if len(body) >= PREFIX and body[0] == 0 and int.from_bytes(body[1:PREFIX], "big") == len(body) - PREFIX:
        if len(body) - PREFIX > max_size:  # the common case, without the generator
            raise FramingError(GrpcStatus.RESOURCE_EXHAUSTED,
                               f"a message of {len(body) - PREFIX} bytes is larger than the limit of {max_size}")
        return body[PREFIX:]
    found = list(_first_two(messages(body, encoding, max_size)))
    if not found:
        raise FramingError(GrpcStatus.INTERNAL, "a unary call carries no message")
    if len(found) > 1:
        raise FramingError(GrpcStatus.INTERNAL, "a unary call carries more than one message")
    return found[0]


def check_unary(body: bytes, encoding: bytes | None = None, max_size: int = DEFAULT_MAX_SIZE) -> None:
    """`unary`'s checks without copying the message in the usual case (one uncompressed message)."""
    if len(body) >= PREFIX and body[0] == 0 and int.from_bytes(body[1:PREFIX], "big") == len(body) - PREFIX \
            and len(body) - PREFIX <= max_size:
        return
    unary(body, encoding, max_size)


def _first_two(it: Iterator[bytes]) -> Iterator[bytes]:
    for count, message in enumerate(it):
        yield message
        if count == 1:
            return


__all__ = ["DEFAULT_MAX_SIZE", "PREFIX", "SUPPORTED_ENCODINGS", "FramingError", "check_unary", "frame", "messages",
           "unary"]
