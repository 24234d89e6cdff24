"""An ndjson batch upstream that streams its answer: a chunked body, one result line per item as it completes.

Items are worked on at once; item i takes the `ms` of its JSON body (0 when absent). Its line is written as soon
as it and every item before it are done (results go in item order, which is how `ndjson` matches them), so the
callers of the early, fast items can be answered long before the batch's slowest item is. Raw asyncio HTTP/1.1
on its own thread, independent of the proxy's code:

    /stream/ok          line i: {"echo": item, "i": i}
    /stream/any         the same lines, each written as soon as its own item is done (in completion order): for
                        routes that match lines by the position they name (`stream_index_field: i`)
    /stream/break/K     K lines, then the connection is closed without the chunked body's end
    /stream/whole       the same lines in one Content-Length body once every item is done (no streaming)

Each batch is recorded in `batches` (the item bodies) with the time it arrived on time.monotonic().
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import orjson

from testbed.threaded_server import ThreadedServer


@dataclass
class StreamedBatch:
    at: float
    path: str
    items: list[Any]


def _delay(item: Any) -> float:
    if isinstance(item, dict) and isinstance(item.get("ms"), int | float):
        return max(0.0, float(item["ms"])) / 1000
    return 0.0


class StreamUpstream(ThreadedServer):
    name = "streaming upstream"

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[StreamedBatch] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                body = await reader.readexactly(length)
                items = [orjson.loads(line) for line in body.splitlines() if line.strip()]
                self.batches.append(StreamedBatch(time.monotonic(), path, items))
                if not await self._answer(path, items, writer):
                    return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client left, or the server is stopping
        finally:
            writer.close()

    async def _answer(self, path: str, items: list[Any], writer: asyncio.StreamWriter) -> bool:
        """Write the answer; False when the connection is to be closed."""
        start = time.monotonic()
        lines = [orjson.dumps({"echo": item, "i": i}) + b"\n" for i, item in enumerate(items)]
        done_at = []
        latest = 0.0
        for item in items:
            latest = max(latest, _delay(item))
            done_at.append(latest)
        if path.startswith("/stream/whole"):
            await asyncio.sleep(latest)
            body = b"".join(lines)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\n"
                         b"content-length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
            return True
        if path.startswith("/stream/any"):
            done_at = [_delay(item) for item in items]
            order = sorted(range(len(lines)), key=lambda i: done_at[i])
            lines, done_at = [lines[i] for i in order], [done_at[i] for i in order]
        limit = int(path.rsplit("/", 1)[1]) if path.startswith("/stream/break/") else len(lines)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\r\n")
        await writer.drain()
        for index, line in enumerate(lines[:limit]):
            wait = start + done_at[index] - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(b"%x\r\n%s\r\n" % (len(line), line))
            await writer.drain()
        if limit < len(lines):
            return False  # broken off: no last chunk
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True


__all__ = ["StreamUpstream", "StreamedBatch"]
