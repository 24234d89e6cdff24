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

from testbed.threaded_server import ThreadedServer


class EventUpstream(ThreadedServer):
    name = "event upstream"

    def __init__(self, wait: float = 10.0) -> None:
        super().__init__()
        self.wait = wait
        self.timeouts = 0
        self._released = threading.Semaphore(0)

    def release(self) -> None:
        """The next event may go."""
        self._released.release()

    def stop(self) -> None:
        for _ in range(100):  # whatever waits for a release wakes up
            self._released.release()
        super().stop()

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
