"""Opening a connection to an upstream endpoint, as the pool (http/pool.py) does it: the TLS it is given (the
context, the check of the server's identity), the protocol the server selected by ALPN, and the error a failed
connect is answered with."""

from __future__ import annotations

import asyncio
import ssl
from typing import Final, Protocol

from meshbatch.errors import ConnectFailed, ConnectTimeout, ProxyError

NOT_H2: Final = "the upstream did not select h2 by ALPN (the cluster's protocol: http2 requires it)"


class UpstreamTls(Protocol):
    """mTLS towards an endpoint: the context of each new connection, and the check of the server's identity."""

    server_name: str | None

    def context(self, alpn: tuple[str, ...] = ()) -> ssl.SSLContext: ...

    def refusal(self, transport: object) -> str:
        """Why the server's identity is refused ("" when it is accepted)."""
        ...


def selected_alpn(transport: asyncio.Transport | None) -> str | None:
    """The protocol the server selected by ALPN (None: none)."""
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    return ssl_object.selected_alpn_protocol() if ssl_object is not None else None

def connect_error(exc: BaseException, address: str) -> ProxyError | None:
    """What a connect that failed with `exc` is answered (None: not a failure to connect, such as a cancel)."""
    if isinstance(exc, TimeoutError):
        return ConnectTimeout("connect_timeout", address)
    if isinstance(exc, ssl.SSLError):
        return ConnectFailed("upstream_tls_failed", f"{address}: {exc.reason or exc}")
    if isinstance(exc, ConnectFailed):
        return exc
    if isinstance(exc, OSError):
        return ConnectFailed("upstream_connect_failed", f"{address}: {exc.strerror or exc}")
    return None


__all__ = ["NOT_H2", "UpstreamTls", "connect_error", "selected_alpn"]
