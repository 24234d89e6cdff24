"""The caller scope of idempotency keys (`batch.idempotency_scope`, `ingest.idempotency_scope`).

An `idempotency-key` is a name the caller chose, and two callers may choose the same one (by accident, or on
purpose to read or erase another's answer). So a key only means something within the scope of the caller that
sent it: the batcher's dedup and replay window and the ingest event ids are keyed by (scope, key), and a caller
of another scope never shares an item, never gets a kept answer, never learns that the key is in use.

- `principal` (default): the caller's credentials (`caller_principal`: mTLS SPIFFE ID and JWT principal), else
  its client address;
- `header:NAME`: the same, plus the values of header NAME, for a gateway behind an authenticating hop that sets
  it (an ext_authz user id). Only as trustworthy as that hop: a caller that can reach the proxy without passing
  it can set the header itself (mTLS between the hop and the proxy keeps such callers in another scope);
- `global`: one scope for everyone, an explicit opt-out for trusted deployments (any caller that knows or
  guesses a key gets its answer).

The batch key (`batch.key`, e.g. `header:x-tenant`) is the caller's to choose, so it never stands in for a scope.
"""

from __future__ import annotations

import hashlib

from meshbatch.config.plain.batch import idempotency_scope_problem
from meshbatch.http.message import Request
from meshbatch.security.identity import caller_principal

GLOBAL = b""  # the scope of `global`; `caller_principal` never returns an empty string
DIGEST_SIZE = 16  # bytes: finding a second scope with a given scope's digest takes ~2^128 tries
_PERSON = b"meshbatch-scope"  # these digests are no other protocol's


def scope_digest(scope: bytes) -> bytes:
    """A fixed-size name of a scope: the same in every process, replica and restart (an ingest retry through
    another replica names the same event), and small to keep (a scope may hold a long header value or token
    subject; the replay window keeps thousands of keys)."""
    return hashlib.blake2b(scope, digest_size=DIGEST_SIZE, person=_PERSON).digest()


class IdempotencyScope:
    """Reads the scope of a request's idempotency key (`of`), or its digest (`digest`: kept in the batcher's dedup
    keys, and hashed into ingest event ids)."""

    __slots__ = ("header", "is_global", "spec")

    def __init__(self, spec: str = "principal") -> None:
        problem = idempotency_scope_problem(spec)
        if problem is not None:
            raise ValueError(f"idempotency_scope {spec!r}: {problem}")
        self.spec = spec
        self.is_global = spec == "global"
        kind, _, name = spec.partition(":")
        self.header = name.lower().encode("ascii") if kind == "header" else None

    def of(self, request: Request, principal: str | None = None) -> bytes:
        """The scope of `request`, whose validated JWT (if any) names `principal`."""
        if self.is_global:
            return GLOBAL
        # surrogatepass: a JWT subject may hold a lone surrogate (JSON "\ud800"); still one string, one encoding
        return caller_principal(request, principal, self.header).encode("utf-8", "surrogatepass")

    def digest(self, request: Request, principal: str | None = None) -> bytes:
        """`scope_digest` of the request's scope."""
        return scope_digest(self.of(request, principal))

    def __repr__(self) -> str:
        return f"<IdempotencyScope {self.spec}>"


__all__ = ["DIGEST_SIZE", "GLOBAL", "IdempotencyScope", "scope_digest"]
