"""Who a request comes from, as the layers after the connection see it (keys of `Request.context`).

- `IDENTITY`: the peer's SPIFFE ID (str), verified in the mTLS handshake; absent on plaintext connections.
- `REQUEST_PRINCIPAL`: `ISSUER/SUBJECT` of a validated JWT; `CLAIMS`: its claims (dict).

Other layers (a rate limit keyed by identity, access logs) read them through `peer_identity` and friends.
"""

from __future__ import annotations

from typing import Any

from meshbatch.http.message import Request

IDENTITY = "identity"
REQUEST_PRINCIPAL = "request_principal"
CLAIMS = "jwt_claims"


def peer_identity(request: Request) -> str | None:
    value = request.context.get(IDENTITY)
    return value if isinstance(value, str) else None


def request_principal(request: Request) -> str | None:
    value = request.context.get(REQUEST_PRINCIPAL)
    return value if isinstance(value, str) else None


def claims(request: Request) -> dict[str, Any]:
    value = request.context.get(CLAIMS)
    return value if isinstance(value, dict) else {}


__all__ = ["CLAIMS", "IDENTITY", "REQUEST_PRINCIPAL", "claims", "peer_identity", "request_principal"]
