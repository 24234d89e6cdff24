"""The supervisor's client of its workers' private admin listeners: one HTTP/1.1 request a connection, the answer
read to its end (the worker's admin answers whole bodies with a content-length)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from meshbatch.upstream.endpoint import split_address

Header = tuple[bytes, bytes]
MAX_ANSWER = 64 * 1024 * 1024


class FetchError(Exception):
    """A worker's admin listener could not be reached or answered badly."""


def _parse(data: bytes) -> tuple[int, list[Header], bytes]:
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        raise FetchError("an incomplete answer")
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise FetchError(f"a bad status line: {lines[0][:80]!r}")
    headers: list[Header] = []
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers.append((name.strip().lower(), value.strip()))
    length = next((int(v) for k, v in headers if k == b"content-length" and v.isdigit()), None)
    body = rest if length is None else rest[:length]
    if length is not None and len(body) < length:
        raise FetchError("the answer was cut")
    return int(parts[1]), headers, body


async def fetch(address: str, target: bytes, *, method: bytes = b"GET", headers: Sequence[Header] = (),
                body: bytes = b"", timeout: float = 5.0) -> tuple[int, list[Header], bytes]:
    """One request to a worker's admin listener at `address` (HOST:PORT): its status, headers and body."""
    host, port = split_address(address)
    lines = [method + b" " + target + b" HTTP/1.1", b"host: 127.0.0.1", b"connection: close",
             b"content-length: " + str(len(body)).encode()]
    lines.extend(name + b": " + value for name, value in headers)
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
                pieces: list[bytes] = []
                size = 0
                while piece := await reader.read(65536):
                    size += len(piece)
                    if size > MAX_ANSWER:
                        raise FetchError(f"{address}: an answer over {MAX_ANSWER} bytes")
                    pieces.append(piece)
                data = b"".join(pieces)
            finally:
                writer.close()
    except (OSError, TimeoutError) as exc:
        raise FetchError(f"{address}: {exc or type(exc).__name__}") from exc
    return _parse(data)


__all__ = ["FetchError", "fetch"]
