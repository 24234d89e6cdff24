"""An HTTP/1.1 upstream whose answers are live streams: server-sent events written one at a time, the next only
once the test has seen the one before. A proxy that holds an unfinished answer until it ends (or fills a buffer)
makes the test's read time out instead of passing.

    GET /events?n=N            200 text/event-stream, chunked: `data: 0`, then `data: 1` once `release()` was
                               called, ... then the chunked body's end
    GET /events?n=N&close=1    the same without framing: the body ends when the connection closes (HTTP/1.0 style)

An event the server waited `wait` seconds for without a `release()` is counted in `timeouts` (then sent anyway).
Raw asyncio on its own thread, independent of the proxy's code.
"""

from __future__ import annotations

import asyncio
import threading
from urllib.parse import parse_qs, urlsplit


class EventUpstream:
    def __init__(self, wait: float = 10.0) -> None:
        self.wait = wait
        self.timeouts = 0
        self.port = 0
        self._released = threading.Semaphore(0)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def release(self) -> None:
        """The next event may go."""
        self._released.release()

    def start(self) -> EventUpstream:
        ready = threading.Event()

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            async with self._server:
                try:
                    await self._server.serve_forever()
                except asyncio.CancelledError:
                    pass

        self._thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
        self._thread.start()
        ready.wait(5)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
        for _ in range(100):  # whatever waits for a release wakes up
            self._released.release()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            target = head.split(b" ", 2)[1].decode()
            query = parse_qs(urlsplit(target).query)
            count = int(query.get("n", ["3"])[0])
            close = query.get("close") == ["1"]
            framing = b"" if close else b"Transfer-Encoding: chunked\r\n"
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n" + framing
                         + (b"Connection: close\r\n" if close else b"") + b"\r\n")
            loop = asyncio.get_running_loop()
            for i in range(count):
                if i and not await loop.run_in_executor(None, self._released.acquire, True, self.wait):
                    self.timeouts += 1
                event = b"data: %d\n\n" % i
                writer.write(event if close else b"%x\r\n%s\r\n" % (len(event), event))
                await writer.drain()
            if not close:
                writer.write(b"0\r\n\r\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


__all__ = ["EventUpstream"]
