"""Which protocol a new downstream connection speaks, by its listener's `codec` (auto | http1 | http2).

- `http1`: HTTP/1.1 only (http/server.py); a client's HTTP/2 preface is refused as any malformed request is (400).
- `http2`: HTTP/2 only (http2/server.py): h2c with prior knowledge, or `h2` by ALPN over TLS; anything else gets
  GOAWAY PROTOCOL_ERROR.
- `auto` (the default): over TLS, the protocol the client chose by ALPN (`h2`, else HTTP/1.1); in plaintext (or
  TLS without ALPN), HTTP/2 when the connection starts with the client preface (`PRI * HTTP/2.0` and the rest
  of RFC 9113 3.4's 24 bytes), HTTP/1.1 otherwise. A connection whose first bytes are a part of the preface
  waits for more, within the header timeout (its own timer; nothing else waits on it); one that says nothing
  is closed after the idle timeout, as an idle HTTP/1.1 connection is. No HTTP/1.1 request starts like the
  preface past its first byte (`POST`, `PUT`, `PATCH` differ at the second), so HTTP/1.1 is never held back.
  An HTTP/1.1 connection may still switch later, by `Upgrade: h2c` (http/upgrade.py, http2/upgrade.py).

The listener's settings are read for every new connection: a reload changes the codec of new connections.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from meshbatch.http.server import HttpServerProtocol
from meshbatch.http.serving import ListenerState
from meshbatch.http2.limits import PREFACE

if TYPE_CHECKING:  # the HTTP/2 server (and the h2 library) is imported by the first HTTP/2 connection
    from meshbatch.http2.server import H2ServerProtocol

AUTO, HTTP1, HTTP2 = "auto", "http1", "http2"
CODECS = (AUTO, HTTP1, HTTP2)
ALPN = {AUTO: ["h2", "http/1.1"], HTTP1: ["http/1.1"], HTTP2: ["h2"]}


def alpn_protocols(codec: str) -> list[str]:
    """What a TLS listener offers by ALPN for `codec`."""
    return ALPN.get(codec, ALPN[AUTO])


class CodecSelector(asyncio.Protocol):
    """A new connection until its protocol is known: then the transport goes to that protocol."""

    def __init__(self, state: ListenerState, loop: asyncio.AbstractEventLoop, codec: str) -> None:
        self.state = state
        self._loop = loop
        self._codec = codec
        self.transport: asyncio.Transport | None = None
        self._seen = b""
        self._timer: asyncio.TimerHandle | None = None
        self._done = False  # closed, or handed over
        self._chosen: HttpServerProtocol | H2ServerProtocol | None = None

    @property
    def busy(self) -> bool:
        return False

    @property
    def closed(self) -> bool:
        """As the protocol chosen says (the TLS accept loop counts a handshake as ok unless its peer was refused)."""
        chosen = self._chosen
        return chosen.closed if chosen is not None else self._done

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        ssl_object = transport.get_extra_info("ssl_object")
        alpn = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
        if alpn == "h2" or (alpn is None and self._codec == HTTP2):
            self._hand_over(_h2_server(self.state, self._loop), b"")
            return
        if alpn is not None or self._codec == HTTP1:  # (http/1.1 by ALPN)
            self._hand_over(HttpServerProtocol(self.state, self._loop), b"")
            return
        state = self.state
        if state.draining or len(state.connections) >= state.settings.max_connections:
            state.rejected_connections += 1
            self._done = True
            self.transport.abort()
            return
        state.connections.add(self)  # drain closes it like an idle connection
        self._arm(state.settings.idle_timeout)

    def data_received(self, data: bytes) -> None:
        if self._done:
            return
        seen = self._seen + data
        if len(seen) < len(PREFACE) and PREFACE.startswith(seen):
            if not self._seen:
                self._arm(self.state.settings.header_timeout)
            self._seen = seen
            return
        if seen.startswith(PREFACE):
            self._hand_over(_h2_server(self.state, self._loop), seen)
        else:
            self._hand_over(HttpServerProtocol(self.state, self._loop), seen)

    def eof_received(self) -> bool | None:
        self.close_if_idle()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._done = True
        self._disarm()
        self.state.forget(self)

    def close_if_idle(self) -> None:
        if not self._done and self.transport is not None:
            self._done = True
            self._disarm()
            self.transport.close()

    def _arm(self, delay: float) -> None:
        self._disarm()
        self._timer = self._loop.call_later(delay, self.close_if_idle)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _hand_over(self, protocol: HttpServerProtocol | H2ServerProtocol, data: bytes) -> None:
        transport = self.transport
        assert transport is not None
        self._done = True
        self._chosen = protocol
        self._disarm()
        self.state.connections.discard(self)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if data and not protocol.closed:
            protocol.data_received(data)


def _h2_server(state: ListenerState, loop: asyncio.AbstractEventLoop) -> H2ServerProtocol:
    from meshbatch.http2.server import H2ServerProtocol

    return H2ServerProtocol(state, loop)


def protocol_factory(state: ListenerState, loop: asyncio.AbstractEventLoop) -> Callable[[], asyncio.Protocol]:
    """New connections of a listener: HTTP/1.1 directly for `codec: http1` in plaintext, else a selector."""

    def make() -> asyncio.Protocol:
        settings = state.settings
        if settings.codec == HTTP1 and settings.tls is None:
            return HttpServerProtocol(state, loop)
        return CodecSelector(state, loop, settings.codec)

    return make


__all__ = ["ALPN", "AUTO", "CODECS", "HTTP1", "HTTP2", "CodecSelector", "alpn_protocols", "protocol_factory"]
