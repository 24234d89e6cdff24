"""`decompress`: undo the request's Content-Encoding (gzip, deflate, zstd, br), with a cap on the output size.

Corrupt data is a 400 (`bad_encoding`), an encoding not in `encodings` a 415, more than `max_bytes` once
decompressed a 413 (a small body that inflates without bound is refused early, not buffered).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import brotli
import zstandard

from meshbatch.config.plain import Decompress
from meshbatch.errors import BadRequest, PayloadTooLarge
from meshbatch.pipeline.base import STAGE_FACTORIES, StageContext
from meshbatch.pipeline.work import UnsupportedEncoding, Work

CHUNK = 65536


class _TooLarge(Exception):
    pass


def _zlib(data: bytes, limit: int, wbits: int) -> bytes:
    inflater = zlib.decompressobj(wbits)
    out = inflater.decompress(data, limit + 1)
    if len(out) > limit:
        raise _TooLarge
    if not inflater.eof:
        raise zlib.error("truncated stream")
    return out


def gunzip(data: bytes, limit: int) -> bytes:
    return _zlib(data, limit, 16 + zlib.MAX_WBITS)


def inflate(data: bytes, limit: int) -> bytes:
    """`deflate` is zlib-wrapped per RFC 9110; raw deflate, which some clients send, is accepted too."""
    try:
        return _zlib(data, limit, zlib.MAX_WBITS)
    except zlib.error:
        return _zlib(data, limit, -zlib.MAX_WBITS)


def unzstd(data: bytes, limit: int) -> bytes:
    """Measured first with a bounded streaming read (a bomb stops at `limit`); then, known to be small enough,
    decompressed in one go, which also tells a truncated frame (the streaming reader just stops early)."""
    reader = zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True)
    size = 0
    while True:
        chunk = reader.read(CHUNK)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise _TooLarge
    inflater = zstandard.ZstdDecompressor().decompressobj()
    out: bytes = inflater.decompress(data)
    if not inflater.eof:
        raise zstandard.ZstdError("truncated frame")
    return out


def unbrotli(data: bytes, limit: int) -> bytes:
    decompressor = brotli.Decompressor()
    out: bytes = decompressor.process(data, output_buffer_limit=limit + 1)
    if len(out) > limit:
        raise _TooLarge
    if not decompressor.is_finished():
        raise brotli.error("truncated stream")
    return out


DECODERS: dict[str, Callable[[bytes, int], bytes]] = {
    "gzip": gunzip, "x-gzip": gunzip, "deflate": inflate, "zstd": unzstd, "br": unbrotli,
}
_ERRORS = (zlib.error, zstandard.ZstdError, brotli.error, EOFError, ValueError)


class DecompressStage:
    name = "decompress"

    def __init__(self, options: Decompress) -> None:
        self.accepted = set(options.encodings) | ({"x-gzip"} if "gzip" in options.encodings else set())
        self.limit = options.max_bytes

    def __call__(self, work: Work) -> None:
        header = work.header(b"content-encoding")
        if header is None:
            return
        codings = [c.strip().lower() for c in header.decode("latin-1").split(",") if c.strip()]
        body = work.body
        for coding in reversed(codings):  # listed in the order they were applied
            if coding == "identity":
                continue
            if coding not in self.accepted:
                raise UnsupportedEncoding("unsupported_encoding",
                                          f"content-encoding {coding!r} is not accepted here; accepted: "
                                          f"{', '.join(sorted(self.accepted - {'x-gzip'}))}")
            try:
                body = DECODERS[coding](body, self.limit)
            except _TooLarge:
                raise PayloadTooLarge("decompressed_too_large",
                                      f"the body decompresses to more than {self.limit} bytes") from None
            except _ERRORS as exc:
                raise BadRequest("bad_encoding", f"the body is not valid {coding} data ({exc})") from None
        work.body = body
        work.headers = [(k, v) for k, v in work.headers if k != b"content-encoding"]


@STAGE_FACTORIES.register("decompress")
def _factory(options: Decompress, context: StageContext) -> DecompressStage:
    return DecompressStage(options)


__all__ = ["DECODERS", "DecompressStage", "gunzip", "inflate", "unbrotli", "unzstd"]
