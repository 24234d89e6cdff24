"""The supervisor's fetch from a worker's admin listener: a whole answer read, a cut one and an endless one
refused (a worker gone wrong cannot grow the supervisor's memory)."""

from __future__ import annotations

import asyncio

import pytest

from meshbatch.runtime.workers import fetch as fetching


async def serve(answer: bytes, repeat: int = 1, more: bytes = b"", times: int = 0) -> tuple[asyncio.Server, str]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        try:
            for piece in [answer] * repeat + [more] * times:
                writer.write(piece)
                await writer.drain()
        except ConnectionError:
            pass  # the fetch stopped reading: what is tested
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def test_an_answer_is_read_whole() -> None:
    server, address = await serve(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n"
                                  b"x-kept: yes\r\n\r\nhello")
    async with server:
        status, headers, body = await fetching.fetch(address, b"/ready")
    assert (status, body, headers) == (200, b"hello", [(b"x-kept", b"yes")])  # end-to-end headers only


async def test_a_chunked_answer_is_read_whole_and_a_bad_one_refused() -> None:
    server, address = await serve(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    async with server:
        assert await fetching.fetch(address, b"/x") == (200, [], b"abc")
    server, address = await serve(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nabc")
    async with server:
        with pytest.raises(fetching.FetchError, match="bad_upstream_response"):
            await fetching.fetch(address, b"/x")
    server, address = await serve(b"not http at all\r\n\r\n")
    async with server:
        with pytest.raises(fetching.FetchError, match="bad_upstream_response"):
            await fetching.fetch(address, b"/x")


async def test_a_cut_answer_and_an_endless_one_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    server, address = await serve(b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\nshort")
    async with server:
        with pytest.raises(fetching.FetchError, match="closed mid-response"):
            await fetching.fetch(address, b"/x")
    monkeypatch.setattr(fetching, "MAX_ANSWER", 100_000)
    for head in (b"HTTP/1.1 200 OK\r\ncontent-length: 999999999\r\n\r\n",  # said too large up front
                 b"HTTP/1.1 200 OK\r\n\r\n",  # ends when the connection closes, and never does
                 b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"):  # chunks without end
        chunk = b"10000\r\n" + b"x" * 65536 + b"\r\n" if b"chunked" in head else b"x" * 65536
        server, address = await serve(head + chunk, repeat=1, more=chunk, times=10)
        async with server:
            with pytest.raises(fetching.FetchError, match="over 100000 bytes"):
                await fetching.fetch(address, b"/x")
