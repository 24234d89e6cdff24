"""Who a request comes from, and one name for the caller that no other caller can produce.

The peer's SPIFFE ID, verified in the mTLS handshake, is a fact of the connection: the connection's guard puts it
on each request (`Request.identity`; None on plaintext connections). A validated JWT's principal
(`ISSUER/SUBJECT`) and claims are what authentication finds out about the request (`Call.principal`,
`Call.claims`, set by the JWT check of layers/authn.py); they are passed to what needs them.

`caller_principal` names the caller as one string, for state that must never be shared between callers
(idempotency keys).
"""

from __future__ import annotations

from meshbatch.http.message import Request


def caller_principal(request: Request, principal: str | None = None, header: bytes | None = None) -> str:
    """Who the caller is, as one string that no other caller can produce: every credential the request carries,
    strongest first: the mTLS peer's SPIFFE ID, the JWT principal `ISSUER/SUBJECT`, and the values of `header`
    (when given: a header an authenticating hop in front of the proxy sets, e.g. an ext_authz user id). All of
    them, not only the strongest: behind one mTLS peer (a front proxy) every JWT user is its own caller.

    A request with none of them is its client address: the weakest, as callers behind one NAT, one front proxy,
    or a sidecar's loopback share it. Each part is tagged and length-prefixed (`spiffe:41:spiffe://...;`), so
    no header value or token subject can spell out another caller's parts.
    """
    parts = []
    peer = request.identity
    if peer is not None:
        parts.append(f"spiffe:{len(peer)}:{peer};")
    if principal is not None:
        parts.append(f"jwt:{len(principal)}:{principal};")
    if header is not None:
        for name, raw in request.headers:  # every occurrence: an appended copy cannot hide behind a forged one
            if name == header:
                value = raw.decode("latin-1")
                parts.append(f"header:{len(value)}:{value};")
    if not parts:
        return f"address:{len(request.client)}:{request.client};"
    return "".join(parts)


__all__ = ["caller_principal"]
