"""Request targets and authorities (RFC 9112 3.2, RFC 3986 3.2.2): what a request may name. Pure.

Routing matches the host, policies match it, and the upstream receives it in `Host`: a value one of them reads
differently from another (`a@b`, `svc/../admin`, `svc%2Fx`) must be refused, not passed on. An authority here
is `reg-name / IPv4address / "[" IPv6address "]"` with an optional port of digits; no userinfo, no path
characters, no percent-escapes (no DNS name needs one). One trailing dot of the host is dropped (`service.` is
the fully qualified spelling of `service` and must route like it; Envoy's `strip_trailing_host_dot`).

Targets: origin-form (`/path?query`); absolute-form (`http://authority/path?query`, what a client sends to a
forward proxy), only with the `http` and `https` schemes, whose authority replaces `Host` (RFC 9112 3.2.2) and
must agree with a `Host` the client also sent; asterisk-form (`*`) only with OPTIONS. Authority-form (CONNECT)
is refused: meshbatch does not tunnel.
"""

from __future__ import annotations

import ipaddress
import re

from meshbatch.errors import BadRequest

# reg-name (unreserved and sub-delims; IPv4 is a reg-name syntactically) or a bracketed IPv6, then `:port`.
_AUTHORITY = re.compile(rb"(?:([A-Za-z0-9\-._~!$&'()*+,;=]*)|\[([0-9A-Fa-f:.]+)\])(?::([0-9]{0,5}))?")
_DEFAULT_PORTS = {b"http": b"80", b"https": b"443"}


class Authority:
    """A checked authority: `host` as sent (case kept, one trailing dot dropped), `port` (None when absent)."""

    __slots__ = ("dotted", "host", "name", "port", "value")

    def __init__(self, host: bytes, port: bytes | None, dotted: bool) -> None:
        self.host = host
        self.port = port
        self.dotted = dotted
        self.name = host.lower()  # what routes and policies match: lower case, without the port
        self.value = host if port is None else host + b":" + port  # the Host header value to forward

    def same_as(self, other: Authority, scheme: bytes) -> bool:
        """Both name the same host and port (an omitted port is the scheme's default)."""
        default = _DEFAULT_PORTS.get(scheme)
        return self.name == other.name and (self.port or default) == (other.port or default)


def parse_authority(raw: bytes) -> Authority:
    """The authority in `raw` (a Host value or the authority of an absolute-form target), or BadRequest."""
    match = _AUTHORITY.fullmatch(raw)
    if match is None:
        raise BadRequest("invalid_host", "the host must be a name, an IPv4 or a bracketed IPv6 address, "
                                         "with an optional port")
    name, ipv6, port = match.group(1, 2, 3)
    if ipv6 is not None:
        try:
            ipaddress.IPv6Address(ipv6.decode("ascii"))
        except ValueError:
            raise BadRequest("invalid_host", "not an IPv6 address") from None
        host = b"[" + ipv6 + b"]"
        dotted = False
    else:
        host = name
        dotted = host.endswith(b".") and len(host) > 1
        if dotted:
            host = host[:-1]
        if host.endswith(b"."):  # `.`, `svc..`: not a host name
            raise BadRequest("invalid_host", "the host name ends with an empty label")
    if port is not None and port and int(port) > 65535:
        raise BadRequest("invalid_host", "the port is out of range")
    return Authority(host, port, dotted)


def split_absolute(url: bytes) -> tuple[bytes, bytes, bytes]:
    """An absolute-form target as (scheme in lower case, authority, origin-form target), or BadRequest."""
    scheme, sep, rest = url.partition(b"://")
    scheme = scheme.lower()
    if not sep:
        raise BadRequest("invalid_target", "the target must be a path, an http(s) URL, or '*' with OPTIONS")
    if scheme not in _DEFAULT_PORTS:
        raise BadRequest("unsupported_scheme", "only http and https URLs are proxied")
    end = len(rest)
    for mark in (b"/", b"?"):
        at = rest.find(mark)
        if 0 <= at < end:
            end = at
    authority = rest[:end]
    if not authority:
        raise BadRequest("invalid_host", "an http(s) URL must name a host")
    target = rest[end:]
    if not target.startswith(b"/"):
        target = b"/" + target
    return scheme, authority, target


__all__ = ["Authority", "parse_authority", "split_absolute"]
