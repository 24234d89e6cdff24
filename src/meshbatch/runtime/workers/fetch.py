"""The supervisor's client of its workers' private admin listeners: one HTTP/1.1 request a connection, the answer
read by the proxy's own response reader (http/client_machine.py: framing, hop-by-hop headers, a size bound)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from meshbatch.http.client_machine import ENDED, FAILED, ResponseReader
from meshbatch.upstream.endpoint import split_address

Header = tuple[bytes, bytes]
MAX_ANSWER = 64 * 1024 * 1024


class FetchError(Exception):
    """A worker's admin listener could not be reached or answered badly."""


async def fetch(address: str, target: bytes, *, method: bytes = b"GET", headers: Sequence[Header] = (),
                body: bytes = b"", timeout: float = 5.0) -> tuple[int, list[Header], bytes]:
    """One request to a worker's admin listener at `address` (HOST:PORT): its status, end-to-end headers and
    body. FetchError when it cannot be reached, answers out of HTTP, cuts its answer or sends over MAX_ANSWER."""
    host, port = split_address(address)
    lines = [method + b" " + target + b" HTTP/1.1", b"host: 127.0.0.1", b"connection: close",
             b"content-length: " + str(len(body)).encode()]
    lines.extend(name + b": " + value for name, value in headers)
    answer = ResponseReader(MAX_ANSWER)
    answer.start(method == b"HEAD")
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
                event = 0
                while event not in (ENDED, FAILED):
                    piece = await reader.read(65536)
                    event = answer.feed(piece, 0) if piece else answer.eof()
                    if not piece and event not in (ENDED, FAILED):
                        raise FetchError(f"{address}: closed before answering")
            finally:
                writer.close()
    except (OSError, TimeoutError) as exc:
        raise FetchError(f"{address}: {exc or type(exc).__name__}") from exc
    if event == FAILED:
        error = answer.error
        if error is not None and error.reason == "upstream_response_too_large":
            raise FetchError(f"{address}: an answer over {MAX_ANSWER} bytes")
        raise FetchError(f"{address}: {error}")
    response = answer.response()
    return response.status, response.headers, response.body


__all__ = ["FetchError", "fetch"]
