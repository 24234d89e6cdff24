"""Chunked transfer coding on the way out (RFC 9112 7.1): a piece of a body, and the last chunk. Shared by the
answers the proxy writes (http/serialize.py, http/server_machine.py) and the uploads it forwards (http/upload.py)."""

from __future__ import annotations

LAST_CHUNK = b"0\r\n\r\n"


def chunk(data: bytes) -> bytes:
    """One piece of a chunked body, ready to write."""
    return b"%x\r\n%s\r\n" % (len(data), data)


__all__ = ["LAST_CHUNK", "chunk"]
