"""Chunked transfer coding on the way out (RFC 9112 7.1): a piece of a body, and the last chunk (with trailers).
Shared by the answers the proxy writes (http/serialize.py, http/server_machine.py) and the uploads it forwards
(http/upload.py)."""

from __future__ import annotations

LAST_CHUNK = b"0\r\n\r\n"


def chunk(data: bytes) -> bytes:
    """One piece of a chunked body, ready to write."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def last_chunk(trailers: list[tuple[bytes, bytes]] | None) -> bytes:
    """The last chunk, with a trailer section when there are trailers (fields already checked where read)."""
    if not trailers:
        return LAST_CHUNK
    return b"0\r\n" + b"".join(b"%s: %s\r\n" % field for field in trailers) + b"\r\n"


__all__ = ["LAST_CHUNK", "chunk", "last_chunk"]
