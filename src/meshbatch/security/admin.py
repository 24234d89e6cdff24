"""Who may use what on the admin API, and the warning when it is exposed.

- Read-only endpoints that show state (`/ready`, `/metrics`, `/config_dump` with its secrets redacted,
  `/clusters`, ...) answer without a token, as Envoy's admin does: it listens on loopback by default.
- Endpoints that change something (anything but GET and HEAD) and endpoints that show payloads (what callers
  sent: `/ingest/dead_letters`) need `authorization: Bearer <admin.token>`; with no token configured they are
  refused (403 `admin_token_not_configured`). Compared in constant time.

An admin listener on a non-loopback address without a token serves its state to the network: `exposure_warnings`
says so, loudly, at start and in `meshbatch check`.
"""

from __future__ import annotations

import hmac
import ipaddress

from meshbatch.errors import Forbidden, ProxyError
from meshbatch.http.message import Request

READ_ONLY = frozenset({b"GET", b"HEAD"})


class AdminUnauthorized(ProxyError):
    status, flag, default_reason = 401, "UAEX", "bad_admin_token"


def check_admin_token(token: str | None, request: Request) -> None:
    """Raises unless `request` carries the admin bearer token (403 when none is configured, else 401)."""
    if not token:
        raise Forbidden("admin_token_not_configured", "this admin endpoint is disabled: set admin.token")
    header = request.header(b"authorization") or b""
    scheme, _, given = header.partition(b" ")
    if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), token.encode()):
        raise AdminUnauthorized("bad_admin_token", "send authorization: Bearer <admin.token>")


def require_admin_token(token: str | None, request: Request) -> None:
    """Raises unless `request` is read-only or carries the admin bearer token."""
    if request.method in READ_ONLY:
        return
    check_admin_token(token, request)


def is_loopback(listen: str) -> bool:
    """True when `listen` (HOST:PORT) binds loopback only."""
    host = listen.rpartition(":")[0].strip("[]").lower().rstrip(".")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a wildcard ("", 0.0.0.0, ::) or another name or address


def exposure_warnings(listen: str | None, token: str | None) -> list[str]:
    """What to tell the operator about an admin listener on `listen` (None: no admin listener)."""
    if listen is None or is_loopback(listen) or token:
        return []
    return [f"admin.listen {listen} is not a loopback address and admin.token is not set: anyone who can reach it "
            "reads the proxy's metrics, configuration (secrets redacted), clusters and queues; bind it to "
            "127.0.0.1, or set admin.token (mutating and payload endpoints then need it)"]


__all__ = ["READ_ONLY", "AdminUnauthorized", "check_admin_token", "exposure_warnings", "is_loopback",
           "require_admin_token"]
