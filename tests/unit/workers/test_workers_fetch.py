"""The supervisor's fetch from a worker's admin listener: a whole answer read, a cut one and an endless one
refused (a worker gone wrong cannot grow the supervisor's memory)."""

from __future__ import annotations

import asyncio

import pytest

from meshbatch.runtime.workers import fetch as fetching


async def serve(answer: bytes, repeat: int = 1) -> tuple[asyncio.Server, str]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        for _ in range(repeat):
            writer.write(answer)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def test_an_answer_is_read_whole() -> None:
    server, address = await serve(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello")
    async with server:
        status, headers, body = await fetching.fetch(address, b"/ready")
    assert (status, body) == (200, b"hello") and (b"content-length", b"5") in headers


async def test_a_cut_answer_and_an_endless_one_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    server, address = await serve(b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\nshort")
    async with server:
        with pytest.raises(fetching.FetchError, match="cut"):
            await fetching.fetch(address, b"/x")
    monkeypatch.setattr(fetching, "MAX_ANSWER", 100_000)
    server, address = await serve(b"x" * 65536, repeat=10)
    async with server:
        with pytest.raises(fetching.FetchError, match="over 100000 bytes"):
            await fetching.fetch(address, b"/x")
