"""TLS towards an upstream endpoint, as the pool (http/pool.py) uses it: the identity check it is given, and the
protocol the server selected by ALPN."""

from __future__ import annotations

import asyncio
import ssl
from typing import Final, Protocol

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

__all__ = ["NOT_H2", "UpstreamTls", "selected_alpn"]
