"""Authentication and authorization as checks: the proxy answers 401/403/413 itself, before anything awaits and
without touching the upstream.

- `JwtCheck`: the bearer token of an edge listener (security/tokens.py); its principal and claims go on the
  call for the policies and the idempotency scope;
- `PolicyCheck`: the Istio-style policies of a listener (every request, before the route is matched: a denied
  caller learns nothing of the routes) or of a route (after the listener's: both must allow);
- `ItemCapCheck`: a batching route's item may not exceed the batch's byte cap.
Each request is decided, and counted, once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from meshbatch.errors import BadRequest, Forbidden, PayloadTooLarge, ProxyError
from meshbatch.security.policy import Authorizer
from meshbatch.security.stats import SecurityStats
from meshbatch.service import Call

if TYPE_CHECKING:  # the JWT library is imported only by a config with a `jwt` block
    from meshbatch.security.tokens import JwtValidator


class JwtCheck:
    __slots__ = ("validator",)

    def __init__(self, validator: JwtValidator) -> None:
        self.validator = validator

    def __call__(self, call: Call) -> ProxyError | None:
        result = self.validator.authenticate(call.request)
        if result is None or isinstance(result, ProxyError):
            return result
        call.principal = result.principal
        call.claims = result.claims
        return None


class PolicyCheck:
    __slots__ = ("authorizer", "listener", "scope", "stats")

    def __init__(self, authorizer: Authorizer, stats: SecurityStats, listener: str, scope: str) -> None:
        self.authorizer = authorizer
        self.stats = stats
        self.listener = listener
        self.scope = scope  # "listener", or the route's name

    def __call__(self, call: Call) -> ProxyError | None:
        try:
            decision = self.authorizer.decide(call.request, call.principal, call.claims)
        except BadRequest as exc:
            self.stats.authz.inc((self.listener, self.scope, "", "ambiguous_path"))
            return exc
        self.stats.authz.inc((self.listener, self.scope, decision.policy,
                              "allow" if decision.allowed else decision.reason))
        return None if decision.allowed else Forbidden(decision.reason, "RBAC: access denied")


class ItemCapCheck:
    __slots__ = ("max_bytes",)

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes

    def __call__(self, call: Call) -> ProxyError | None:
        size = len(call.request.body)
        if size > self.max_bytes:
            return PayloadTooLarge("item_too_large",
                                   f"an item of {size} bytes exceeds the batch cap of {self.max_bytes}")
        return None


__all__ = ["ItemCapCheck", "JwtCheck", "PolicyCheck"]
