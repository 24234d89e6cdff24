"""What a listener's connections share: the settings (with the listener's `dispatch`), the listener's state
(open connections, drain), and the shapes of a dispatch, an answer under way and a connection's guard.

Each request read goes to the listener's `dispatch` (its request stack, built by runtime/listener.py) with a
callback for the answer; dispatch answers at once (a local reply), or returns what is under way (a task, or an
exchange driven by callbacks) so that a disconnect can cancel it, and a batcher can drop a caller whose batch
is not yet sealed. `serve_handler` makes a dispatch of an async handler (the admin API).
"""

from __future__ import annotations

import asyncio
import binascii
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Protocol

from meshbatch.errors import ProxyError
from meshbatch.http.limits import ParserLimits
from meshbatch.http.message import Handler, Request, Response
from meshbatch.http.serialize import local_reply
from meshbatch.http2.limits import H2Limits

log = logging.getLogger("meshbatch.server")

Observer = Callable[[Request, Response, float], None]
Answer = Callable[[Response], None]


class Connection(Protocol):
    """An open downstream connection, as its listener sees it."""

    @property
    def busy(self) -> bool: ...

    def close_if_idle(self) -> None: ...


class ConnectionGuard(Protocol):
    """What a connection checks of each of its requests (security/guard.py: the peer's identity, its rates)."""

    def admit(self, request: Request) -> ProxyError | None: ...


class Pending(Protocol):
    """An answer under way (a task, an exchange): cancelled when the caller goes away."""

    def cancel(self) -> object: ...


# A listener's request stack: answer through the callback, once; return what is under way (None: answered).
Dispatch = Callable[[Request, Answer], "Pending | None"]


def serve_handler(handler: Handler, loop: asyncio.AbstractEventLoop) -> Dispatch:
    """A dispatch that runs an async handler in a task per request (the admin API, tests)."""

    async def run(request: Request, answer: Answer) -> None:
        try:
            response = await handler(request)
        except ProxyError as error:
            response = local_reply(error)
        except asyncio.CancelledError:
            return  # the client went away; nobody to answer
        except Exception:
            log.exception("handler failed for %r", request)
            response = local_reply(ProxyError("internal_error"))
        answer(response)

    def dispatch(request: Request, answer: Answer) -> Pending | None:
        return loop.create_task(run(request, answer))

    return dispatch


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """What a listener's connections need; replaced as a whole on reload (connections read it per request)."""

    dispatch: Dispatch
    parser_limits: ParserLimits = field(default_factory=ParserLimits)
    header_timeout: float = 10.0
    idle_timeout: float = 60.0
    max_connections: int = 10_000
    max_pipelined: int = 32
    max_pipelined_bytes: int = 1_048_576
    max_buffer_bytes: int = 1_048_576  # the write buffer's high-water mark (and the streaming threshold)
    send_timeout: float = 30.0
    request_id_in_response: bool = True
    scheme: bytes = b"http"
    observe: Observer | None = None
    # mTLS and connection rates (meshbatch.security): run in connection_made, it refuses a peer (ProxyError) or
    # gives the connection a guard that admits each request; None (no TLS, no rates): no per-request work.
    guard: Callable[[asyncio.BaseTransport], ConnectionGuard | None] | None = None
    # Opaque here: read by the accept loop of a listener with a `tls` block for each new connection
    # (security/listener.py `ServerTls`).
    tls: object | None = None
    # Which protocol the listener's connections speak: auto (HTTP/2 by preface or ALPN, else HTTP/1.1), http1 or
    # http2 (meshbatch.http2.accept), and the limits of its HTTP/2 connections.
    codec: str = "auto"
    http2: H2Limits = field(default_factory=H2Limits)
    # An HTTP/2 body still arriving after its head's read is dispatched at once with `request.upload` (the dispatch
    # collects or streams it: http/upload.py); False: every request is dispatched with its body whole.
    uploads: bool = False


@dataclass(slots=True)
class ListenerState:
    """Shared by all connections of one listener: the live settings, the open connections, drain state."""

    settings: ServerSettings
    connections: set[Connection] = field(default_factory=set)
    draining: bool = False
    rejected_connections: int = 0
    accepted_connections: int = 0
    aborts: dict[str, int] = field(default_factory=dict)  # connections aborted, by reason (send_timeout, ...)
    upgrades: int = 0  # HTTP/1.1 connections switched to HTTP/2 by `Upgrade: h2c` (http2/upgrade.py)

    emptied: asyncio.Event = field(default_factory=asyncio.Event)

    def drain(self, close_idle: bool = True) -> None:
        """Stop keep-alive: busy connections close after their current answer, and so do idle ones after their
        next answer; with `close_idle`, idle connections close now (else call `close_idle()` later)."""
        self.draining = True
        if close_idle:
            self.close_idle()
        if not self.connections:
            self.emptied.set()

    def close_idle(self) -> None:
        for conn in list(self.connections):
            conn.close_if_idle()

    def forget(self, conn: Connection) -> None:
        self.connections.discard(conn)
        if self.draining and not self.connections:
            self.emptied.set()

    @property
    def active_requests(self) -> int:
        return sum(1 for c in self.connections if c.busy)


class _RequestIds:
    """Request ids: 128 random bits each, as 32 hex digits, cut from one read of the system's random source per
    128 of them (a getrandom(2) call, and hexlifying, per id cost more than the rest of the id's work)."""

    __slots__ = ("_at", "_hex")

    def __init__(self) -> None:
        self._hex = b""
        self._at = 0

    def next(self) -> bytes:
        at = self._at
        if at >= len(self._hex):
            self._hex = binascii.hexlify(os.urandom(2048))
            at = 0
        self._at = at + 32
        return self._hex[at:at + 32]

    def forget(self) -> None:
        """A forked process must not hand out the ids its parent still had."""
        self._hex = b""
        self._at = 0


# Final: a C static in the compiled build, read without a dict look-up per request.
_IDS: Final = _RequestIds()
os.register_at_fork(after_in_child=_IDS.forget)


def new_request_id() -> bytes:
    """128 random bits as 32 lower-case hex digits: unique enough to trace by."""
    return _IDS.next()


__all__ = ["Answer", "Connection", "ConnectionGuard", "Dispatch", "ListenerState", "Observer", "Pending",
           "ServerSettings", "new_request_id", "serve_handler"]
