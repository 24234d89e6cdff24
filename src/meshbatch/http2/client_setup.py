"""How an HTTP/2 upstream connection (http2/client.py) is set up: h2's client state machine with our SETTINGS (from
its `StreamLimits`), our HPACK encoder and the checks h2 is left to do.

Received blocks are checked by http2/headers.py (`answer_fields`, `trailer_fields`: RFC 9113 8.2-8.3) and sent
ones are built here (`request_block`: lower-case names, no connection-specific field) rather than by h2, whose
checks, generators per field, cost more than the rest of a head. Requests' fields are HPACK-coded without the
dynamic table (http2/hpack_out.py), as nginx's upstream HTTP/2 does.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

import h2.config
import h2.connection
import h2.settings

from meshbatch.http.message import Headers
from meshbatch.http2.client_stream import StreamLimits
from meshbatch.http2.headers import CONNECTION_SPECIFIC, TE_TRAILERS
from meshbatch.http2.hpack_fields import never_indexed
from meshbatch.http2.hpack_in import RepeatDecoder
from meshbatch.http2.hpack_out import StaticEncoder
from meshbatch.http2.machine import QuietConnection
from meshbatch.http2.state import CLIENT_AFTER_GOAWAY

_CONFIG = h2.config.H2Configuration(client_side=True, header_encoding=None, validate_inbound_headers=False,
                                    normalize_inbound_headers=False, validate_outbound_headers=False,
                                    normalize_outbound_headers=False)
_S = h2.settings.SettingCodes


def new_client_connection(limits: StreamLimits) -> h2.connection.H2Connection:
    """h2's client state machine with our SETTINGS (its preface is sent by `initiate_connection`)."""
    conn = QuietConnection(config=_CONFIG)  # (h2's, without formatting each frame for its trace log)
    conn.encoder = StaticEncoder()
    conn.decoder = RepeatDecoder()  # answers' blocks that repeat are decoded once (http2/hpack_in.py)
    conn.local_settings = h2.settings.Settings(client=True, initial_values={
        _S.ENABLE_PUSH: 0,
        _S.MAX_CONCURRENT_STREAMS: 0,  # (streams the server would open: none)
        _S.INITIAL_WINDOW_SIZE: limits.stream_window,
        _S.MAX_HEADER_LIST_SIZE: limits.max_header_list_size,
    })
    conn.decoder.max_header_list_size = limits.max_header_list_size  # enforced from the first frame on
    conn.state_machine._transitions = CLIENT_AFTER_GOAWAY  # type: ignore[misc]
    return conn


# Sent never indexed (RFC 7541 7.1.3): credentials, and the request id, unique to each request.
NEVER_INDEXED: Final = frozenset({b"authorization", b"proxy-authorization", b"x-request-id"})


def request_block(method: bytes, target: bytes, headers: Headers, scheme: bytes) -> Headers:
    """The request's header block: pseudo-header fields first (`host` becomes `:authority`), then the other
    fields with lower-case names (h2 leaves the block as given) without the connection-specific ones, and
    `te: trailers` (gRPC's requirement; the proxy takes trailers whatever the caller said, and hands them on only
    to a caller that asked)."""
    authority = b""
    out: Headers = [(b":method", method), (b":scheme", scheme), (b":path", target or b"/")]
    for item in headers:
        name = item[0]
        if not name.islower():
            name = name.lower()
            item = (name, item[1])
        if name in CONNECTION_SPECIFIC:
            if name == b"host" and not authority:
                authority = item[1]
            continue
        if name in NEVER_INDEXED:
            item = never_indexed(name, item[1])
        out.append(item)
    out.append(TE_TRAILERS)
    if authority:
        out.insert(3, (b":authority", authority))
    if method == b"CONNECT":  # (not sent by the proxy; kept well-formed should a caller's reach here)
        out[:4] = [(b":method", method), (b":authority", authority or target)]
    return out


def nothing(conn: Any) -> None:
    """The connection's `on_free` and `on_close` until its pool sets them."""
    return None


def retrieved(future: asyncio.Future[None]) -> None:
    """The `ready` future's callback: nobody may wait for it any more, so its error is no unretrieved error."""
    if not future.cancelled():
        future.exception()


__all__ = ["NEVER_INDEXED", "new_client_connection", "nothing", "request_block", "retrieved"]
