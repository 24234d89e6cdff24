"""Who a request comes from, as the layers after the connection see it (keys of `Request.context`).

- `IDENTITY`: the peer's SPIFFE ID (str), verified in the mTLS handshake; absent on plaintext connections.
- `REQUEST_PRINCIPAL`: `ISSUER/SUBJECT` of a validated JWT; `CLAIMS`: its claims (dict).

Other layers (a rate limit keyed by identity, access logs) read them through `peer_identity` and friends;
`caller_principal` names the caller as one string, for state that must never be shared between callers
(idempotency keys).
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


def caller_principal(request: Request, header: bytes | None = None) -> str:
    """Who the caller is, as one string that no other caller can produce: every credential the request carries,
    strongest first: the mTLS peer's SPIFFE ID, the JWT principal `ISSUER/SUBJECT`, and the values of `header`
    (when given: a header an authenticating hop in front of the proxy sets, e.g. an ext_authz user id). All of
    them, not only the strongest: behind one mTLS peer (a front proxy) every JWT user is its own caller.

    A request with none of them is its client address: the weakest, as callers behind one NAT, one front proxy,
    or a sidecar's loopback share it. Each part is tagged and length-prefixed (`spiffe:41:spiffe://...;`), so
    no header value or token subject can spell out another caller's parts.
    """
    context = request.context
    parts = []
    peer = context.get(IDENTITY)
    if isinstance(peer, str):
        parts.append(f"spiffe:{len(peer)}:{peer};")
    principal = context.get(REQUEST_PRINCIPAL)
    if isinstance(principal, str):
        parts.append(f"jwt:{len(principal)}:{principal};")
    if header is not None:
        for name, raw in request.headers:  # every occurrence: an appended copy cannot hide behind a forged one
            if name == header:
                value = raw.decode("latin-1")
                parts.append(f"header:{len(value)}:{value};")
    if not parts:
        return f"address:{len(request.client)}:{request.client};"
    return "".join(parts)


def claims(request: Request) -> dict[str, Any]:
    value = request.context.get(CLAIMS)
    return value if isinstance(value, dict) else {}


__all__ = ["CLAIMS", "IDENTITY", "REQUEST_PRINCIPAL", "caller_principal", "claims", "peer_identity",
           "request_principal"]
