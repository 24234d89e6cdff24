"""The accept loop of a listener with a `tls` block: strict mTLS, permissive (mTLS or plaintext), or disabled.

Plain listeners use `loop.create_server`. A TLS listener accepts sockets itself so that it can (a) look at the
first byte of a permissive connection without consuming it (`MSG_PEEK`: 0x16 starts a TLS handshake record,
anything else is plaintext HTTP), (b) bound handshakes in progress and their time, and (c) count every refused
peer by reason. The accepted socket then goes to `loop.connect_accepted_socket`, with the listener's front
context for TLS; the HTTP protocol's `connection_made` runs after the handshake and checks the peer's SPIFFE
ID there (see meshbatch.security.guard), before any request is read.

The mode is read from the listener's live settings for every new connection, so a reload can move a listener
from permissive to strict (and back) without closing its socket or its open connections.

When `accept()` fails for want of file descriptors (or buffers, or memory), the socket is taken off the loop
for a growing delay instead of being retried at once, which spins (see meshbatch.security.accept).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from meshbatch.security.accept import AcceptBackoff, LogThrottle, error_name, skip_connection
from meshbatch.security.stats import SecurityStats
from meshbatch.security.tls import handshake_failure

log = logging.getLogger("meshbatch.security")

TLS_RECORD_HANDSHAKE = 0x16
ACCEPTS_PER_WAKEUP = 64


@dataclass(frozen=True, slots=True)
class ServerTls:
    """What the accept loop needs of a listener's TLS config (part of its ServerSettings)."""

    listener: str
    mode: str  # strict | permissive | disable
    context: ssl.SSLContext | None  # the front context (None when disabled)
    handshake_timeout: float
    stats: SecurityStats


class TlsServer(asyncio.AbstractServer):
    """A listening socket whose connections are sorted and handshaken here; `close()` stops accepting only."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket,
                 factory: Callable[[], asyncio.Protocol], settings: Callable[[], ServerTls | None],
                 max_pending: Callable[[], int]) -> None:
        self._loop = loop
        self._sock = sock
        self._factory = factory
        self._settings = settings
        self._max_pending = max_pending
        self._pending: set[socket.socket] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._serving = False
        self._reading = False  # registered with the loop (not while paused after a failed accept)
        self._resume: asyncio.TimerHandle | None = None
        self._backoff = AcceptBackoff()
        self._log = LogThrottle()
        self.accept_errors = 0
        self.sockets = [sock]

    # asyncio.AbstractServer --------------------------------------------------------------------------
    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return self._serving

    async def start_serving(self) -> None:
        if not self._serving:
            self._serving = True
            self._read()

    async def serve_forever(self) -> None:
        await self.start_serving()
        await asyncio.Future()

    def close(self) -> None:
        self._serving = False
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._sock.fileno())
        if self._sock.fileno() >= 0:
            self._sock.close()

    async def wait_closed(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # accepting -----------------------------------------------------------------------------------
    def _read(self) -> None:
        self._resume = None
        if self._serving and not self._reading and self._sock.fileno() >= 0:
            self._reading = True
            self._loop.add_reader(self._sock.fileno(), self._on_readable)

    def _on_readable(self) -> None:
        for _ in range(ACCEPTS_PER_WAKEUP):
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._count(exc)
                if skip_connection(exc.errno):  # that connection is gone; the next one may be fine
                    continue
                self._pause(exc)
                return
            self._backoff.succeeded()
            try:
                conn.setblocking(False)
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # reset between accept and here
                conn.close()
                continue
            self._admit(conn)

    def _count(self, exc: OSError) -> None:
        self.accept_errors += 1
        tls = self._settings()
        if tls is not None:
            tls.stats.accept_errors.inc((tls.listener, error_name(exc.errno)))

    def _pause(self, exc: OSError) -> None:
        """Stop reading the socket for a while: retrying at once would spin (meshbatch.security.accept)."""
        delay = self._backoff.failed()
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._sock.fileno())
        self._resume = self._loop.call_later(delay, self._read)
        left_out = self._log.allow(self._loop.time())
        if left_out is not None:
            tls = self._settings()
            name = tls.listener if tls is not None else self._sock.getsockname()
            log.warning("listener %s: accept failed (%s): %s; accepting again in %d ms%s", name,
                        error_name(exc.errno), exc.strerror or exc, round(delay * 1000),
                        f" ({left_out} more since the previous line)" if left_out else "")

    def _admit(self, conn: socket.socket) -> None:
        tls = self._settings()
        if tls is None or tls.mode == "disable" or tls.context is None:
            self._spawn(self._plain(conn))
            return
        if len(self._pending) >= self._max_pending():
            tls.stats.handshake(tls.listener, "too_many_handshakes")
            conn.close()
            return
        self._pending.add(conn)
        if tls.mode == "strict":
            self._spawn(self._handshake(conn, tls))
        else:
            self._spawn(self._sniff(conn, tls))

    def _spawn(self, coro: Any) -> None:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _plain(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):  # the loop owns (and has closed) the socket from here on
            await self._loop.connect_accepted_socket(self._factory, conn)

    async def _readable(self, fd: int) -> None:
        waiter: asyncio.Future[None] = self._loop.create_future()

        def ready() -> None:
            if not waiter.done():
                waiter.set_result(None)

        self._loop.add_reader(fd, ready)
        try:
            await waiter
        finally:
            self._loop.remove_reader(fd)

    async def _sniff(self, conn: socket.socket, tls: ServerTls) -> None:
        """Permissive: wait (within the handshake timeout) for the first byte and pick the protocol by it."""
        try:
            async with asyncio.timeout(tls.handshake_timeout):
                while True:
                    await self._readable(conn.fileno())
                    try:
                        first = conn.recv(1, socket.MSG_PEEK)
                    except (BlockingIOError, InterruptedError):
                        continue
                    break
        except (TimeoutError, OSError) as exc:
            self._pending.discard(conn)
            tls.stats.handshake(tls.listener, "handshake_timeout" if isinstance(exc, TimeoutError) else "reset")
            conn.close()
            return
        if not first:  # closed before saying anything
            self._pending.discard(conn)
            conn.close()
            return
        if first[0] == TLS_RECORD_HANDSHAKE:
            await self._handshake(conn, tls)
            return
        self._pending.discard(conn)
        tls.stats.handshake(tls.listener, "plaintext")
        await self._plain(conn)

    async def _handshake(self, conn: socket.socket, tls: ServerTls) -> None:
        try:
            _, protocol = await self._loop.connect_accepted_socket(
                self._factory, conn, ssl=tls.context, ssl_handshake_timeout=tls.handshake_timeout)
        except (OSError, ssl.SSLError, TimeoutError, EOFError) as exc:
            tls.stats.handshake(tls.listener, handshake_failure(exc))  # the loop has closed the socket
            return
        finally:
            self._pending.discard(conn)
        if not getattr(protocol, "closed", False):
            tls.stats.handshake(tls.listener, "ok")


async def open_tls_server(loop: asyncio.AbstractEventLoop, host: str, port: int,
                          factory: Callable[[], asyncio.Protocol], settings: Callable[[], ServerTls | None],
                          max_pending: Callable[[], int], backlog: int = 2048, reuse_port: bool = False) -> TlsServer:
    """Bind and listen on host:port (SO_REUSEADDR, like create_server; SO_REUSEPORT with `reuse_port`) and start
    accepting."""
    infos = await loop.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    server = TlsServer(loop, sock, factory, settings, max_pending)
    await server.start_serving()
    return server


__all__ = ["ServerTls", "TlsServer", "open_tls_server"]
