"""The admin API's mutating endpoints (anything but GET and HEAD) need `authorization: Bearer <admin.token>`;
with no token configured they are refused. Compared in constant time."""

from __future__ import annotations

import hmac

from meshbatch.errors import Forbidden, ProxyError
from meshbatch.http.message import Request

READ_ONLY = frozenset({b"GET", b"HEAD"})


class AdminUnauthorized(ProxyError):
    status, flag, default_reason = 401, "UAEX", "bad_admin_token"


def require_admin_token(token: str | None, request: Request) -> None:
    """Raises unless `request` is read-only or carries the admin bearer token."""
    if request.method in READ_ONLY:
        return
    if not token:
        raise Forbidden("admin_token_not_configured", "mutating admin endpoints are disabled: set admin.token")
    header = request.header(b"authorization") or b""
    scheme, _, given = header.partition(b" ")
    if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), token.encode()):
        raise AdminUnauthorized("bad_admin_token", "send authorization: Bearer <admin.token>")


__all__ = ["READ_ONLY", "AdminUnauthorized", "require_admin_token"]
