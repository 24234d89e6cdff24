"""Which `Host` the admin API answers: a defence against DNS rebinding. Pure.

A web page from `evil.example` can make the browser resolve `evil.example` to 127.0.0.1 (its DNS answer changes
after the page loaded) and then read the admin API as if it were the page's own origin. The browser still sends
`Host: evil.example`: answering only the names the admin listener is really reached by closes that door. Like the
Jupyter and webpack development servers, the admin API answers:

- loopback: `localhost`, `*.localhost` (RFC 6761), `127.0.0.0/8`, `::1`;
- its own listen address: the configured host (a name or an address); when it listens on every address
  (`0.0.0.0`, `[::]`), any address literal: a page cannot rebind a name it does not use, and this is what
  probes and scrapers send (`Host: POD_IP:9901`);
- `admin.allowed_hosts`: exact names or `*.suffix` (`*` alone turns the check off);
- a request with no `Host` at all (HTTP/1.0): a browser always sends one.

Anything else is a 403 `admin_host_not_allowed`. The port is not compared (a rebinding page uses the port).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

WILDCARD_LISTEN = frozenset({"", "0.0.0.0", "::", "*"})


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    bare = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 is 127.0.0.1
    return mapped if mapped is not None else address


class AdminHosts:
    __slots__ = ("any", "any_address", "names", "suffixes")

    def __init__(self, listen: str, allowed: Sequence[str] = ()) -> None:
        host = listen.rpartition(":")[0].strip("[]").lower()
        self.any = "*" in allowed
        self.any_address = host in WILDCARD_LISTEN
        names = {h for h in allowed if not h.startswith("*.")}
        if not self.any_address:
            own = _address(host)
            names.add(str(own) if own is not None else host.rstrip("."))
        self.names = frozenset(names)
        self.suffixes = tuple(h[1:] for h in allowed if h.startswith("*."))  # ".svc.cluster.local"

    def allows(self, host: bytes) -> bool:
        """`host` as the request reader gives it: lower case, without the port (IPv6 in brackets)."""
        if not host or self.any:
            return True
        try:
            name = host.decode("ascii").rstrip(".")
        except UnicodeDecodeError:
            return False
        address = _address(name)
        if address is not None:
            return address.is_loopback or self.any_address or str(address) in self.names
        if name == "localhost" or name.endswith(".localhost"):
            return True
        return name in self.names or any(name.endswith(suffix) for suffix in self.suffixes)


__all__ = ["AdminHosts"]
