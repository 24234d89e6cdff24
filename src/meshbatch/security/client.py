"""mTLS towards a cluster's endpoints: the context of each new connection and the check of the server's identity.

The proxy presents its workload certificate, verifies the server's chain against the trust bundle (host names
are not checked: workload certificates name SPIFFE IDs), then requires the server's SPIFFE ID to be in the
trust domain and, when `server_ids` is set, to match one of those patterns. A mismatch closes the connection
before a request is written: 503 `upstream_tls_identity_mismatch`.
"""

from __future__ import annotations

import ssl
from typing import Any

from meshbatch.security.patterns import Glob
from meshbatch.security.tls import CertSource, PeerRejected, verify_peer


class ClientTls:
    __slots__ = ("_allowed", "min_version", "server_name", "source", "trust_domains")

    def __init__(self, source: CertSource, min_version: str, trust_domains: frozenset[str],
                 server_ids: list[str], server_name: str | None) -> None:
        self.source = source
        self.min_version = min_version
        self.trust_domains = trust_domains
        self._allowed = Glob(server_ids) if server_ids else None
        self.server_name = server_name

    def context(self, alpn: tuple[str, ...] = ()) -> ssl.SSLContext:
        """The current client context (a rotation applies to the next connection), offering `alpn` if any."""
        return self.source.client_context(self.min_version, alpn)

    def verify(self, transport: Any) -> str:
        """The server's SPIFFE ID, or PeerRejected."""
        allowed = self._allowed
        return verify_peer(transport.get_extra_info("ssl_object"), self.trust_domains,
                           allowed.match if allowed is not None else None)

    def refusal(self, transport: Any) -> str:
        """Why the server's identity is refused ("" when it is accepted)."""
        try:
            self.verify(transport)
        except PeerRejected as exc:
            return f"{exc.reason}: {exc}"
        return ""

    def __repr__(self) -> str:
        return f"<ClientTls {self.source.spec.cert} min={self.min_version}>"


__all__ = ["ClientTls"]
