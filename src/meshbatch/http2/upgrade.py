"""h2c by Upgrade (RFC 7540 3.2): an HTTP/1.1 connection whose request asked for `Upgrade: h2c` goes on as HTTP/2.

The HTTP/1.1 side (http/upgrade.py, http/server.py) has read the request whole and checked its HTTP2-Settings;
when the request is next to be answered, `switch` writes `101 Switching Protocols`, hands the transport to a new
`H2ServerProtocol` whose h2 connection starts with stream 1 half-closed (remote), and that connection serves the
request on stream 1, then reads what the client sent after it: the client preface first (RFC 9113 3.4), then
frames as on any HTTP/2 connection, with the same limits, timers and attack watch. Bytes that are not the
preface close the connection (GOAWAY PROTOCOL_ERROR), as on a connection with prior knowledge.
"""

from __future__ import annotations

import asyncio

from h2.exceptions import H2Error

from meshbatch.errors import BadRequest, ProxyError
from meshbatch.http.serving import ConnectionGuard, ListenerState
from meshbatch.http.upgrade import SWITCHING, Upgrade
from meshbatch.http2.connection import new_connection
from meshbatch.http2.server import H2ServerProtocol


def switch(state: ListenerState, loop: asyncio.AbstractEventLoop, transport: asyncio.Transport,
           guard: ConnectionGuard | None, upgrade: Upgrade) -> ProxyError | None:
    """Switch the connection to HTTP/2 and serve the upgrade's request on stream 1; or the 400 to answer over
    HTTP/1.1 when h2 refuses the client's settings (nothing was written then)."""
    assert upgrade.settings is not None
    try:
        conn = new_connection(state.settings.http2, upgrade.settings)
    except (H2Error, ValueError) as error:
        return BadRequest("bad_http2_settings", f"HTTP2-Settings refused: {error}")
    state.upgrades += 1
    transport.write(SWITCHING)
    protocol = H2ServerProtocol(state, loop)
    transport.set_protocol(protocol)
    transport.resume_reading()  # (the HTTP/1.1 side may have paused it: pipelined requests)
    protocol.adopt(transport, guard, conn, upgrade.request, upgrade.rest)
    return None


__all__ = ["switch"]
