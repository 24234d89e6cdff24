"""A raw asyncio TCP server on 127.0.0.1 and an ephemeral port, on its own thread and event loop: the base of the
test upstreams written against asyncio streams (independent of the proxy's code). A subclass writes `_serve`."""

from __future__ import annotations

import asyncio
import threading
from typing import Self


class ThreadedServer:
    name = "upstream"

    def __init__(self) -> None:
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    def start(self) -> Self:
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

        self._thread = threading.Thread(target=lambda: asyncio.run(main()), name=self.name, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError(f"the {self.name} did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._server is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._server.close)
            self._thread.join(10)


__all__ = ["ThreadedServer"]
