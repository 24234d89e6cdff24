"""Any ASGI app (the consumer SDK's `asgi_app`, a test's own) served by uvicorn on an ephemeral port, in a thread.

    server = AsgiServer(asgi_app(handle, codec="envelope", path="/orders/batch")).start()
    ... cluster("consumer", server.address) ...
    server.stop()
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import uvicorn


class AsgiServer:
    def __init__(self, app: Any, name: str = "asgi-upstream") -> None:
        self.app = app
        self.name = name
        self.host = "127.0.0.1"
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> AsgiServer:
        # IPPROTO_TCP: asyncio sets TCP_NODELAY only on accepted sockets of that proto (see batch_upstream.py)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, http="h11", interface="asgi3", lifespan="off", log_level="warning",
                                access_log=False, timeout_graceful_shutdown=1)
        self._server = server = uvicorn.Server(config)
        self._thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), name=self.name,
                                        daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise AssertionError(f"{self.name} did not start within {timeout}s")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)

    def __enter__(self) -> AsgiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["AsgiServer"]
