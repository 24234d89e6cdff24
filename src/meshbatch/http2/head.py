"""An HTTP/2 request head made into the same unambiguous `Request` an HTTP/1.1 one becomes. Pure.

First the rules of an HTTP/2 block (RFC 9113 8.2-8.3), checked here rather than by h2 (whose checks cost more than
the rest of the head together): field names lower case and of allowed characters, values without NUL, CR, LF or
whitespace at their ends, no connection-specific field, `te` only `trailers`, pseudo-header fields known, once
each, before the others, and the ones a request needs (`:method`, and `:scheme` and a non-empty `:path` but for
CONNECT). A malformed request is answered 400 on its stream (8.1.1 allows a response before the stream closes)
and never forwarded; split `cookie` fields are joined again (8.2.3). What is left is what
http/parser.py does for HTTP/1.1, through the same functions so both protocols agree byte for byte: the path in
normal form (http/paths.py), the authority checked (http/target.py; `:authority` and a `host` field must agree),
fields the proxy acts on present at most once (http/fields.py), the forwarding fields trusted or dropped by the
listener's rules and the client address derived from them (http/forwarded.py), and the listener's header limits
(431). The upstream speaks HTTP/1.1, so the authority travels as `host`.
"""

from __future__ import annotations

from typing import Final

from meshbatch.errors import BadRequest, HeadersTooLarge, PayloadTooLarge
from meshbatch.http.fields import single
from meshbatch.http.forwarded import client_address
from meshbatch.http.message import Headers, Request
from meshbatch.http.parser import ParserLimits
from meshbatch.http.paths import normalize_path
from meshbatch.http.target import Authority, parse_authority
from meshbatch.http2.headers import field_problem

# What proxies in front say about the original request besides x-forwarded-for: believed only through them.
FORWARDED: Final = frozenset({b"forwarded", b"x-forwarded-host", b"x-forwarded-port", b"x-real-ip"})
FIELD_OVERHEAD: Final = 32  # RFC 9113 6.5.2: a field's size is its name, its value and 32
MAX_AUTHORITIES: Final = 256  # authorities kept, checked (`_authority`)
_AUTHORITIES: Final[dict[bytes, Authority]] = {}
# The request's pseudo-header fields, each a bit of the set seen so far.
_METHOD: Final = 1
_SCHEME: Final = 2
_PATH: Final = 4
_AUTHORITY: Final = 8
_PROTOCOL: Final = 16
_PSEUDO: Final[dict[bytes, int]] = {b":method": _METHOD, b":scheme": _SCHEME, b":path": _PATH,
                                    b":authority": _AUTHORITY, b":protocol": _PROTOCOL}


def _malformed(detail: str) -> BadRequest:
    return BadRequest("malformed_h2_request", detail)


def build_request(fields: Headers, limits: ParserLimits, peer: str, scheme: bytes, now: float) -> Request:
    """The request of a complete HTTP/2 head (`fields` as h2 decoded them), or a ProxyError to answer."""
    method = path = authority = b""
    headers: Headers = []
    size = 0
    seen: set[bytes] = set()
    host: bytes | None = None
    request_id = b""
    xff: list[bytes] | None = None
    trust = limits.trust
    hops = trust.xff_num_trusted_hops
    pseudo = 0
    regular = False
    cookies: list[bytes] | None = None
    for name, value in fields:
        size += len(name) + len(value) + FIELD_OVERHEAD
        if name[:1] == b":":
            bit = _PSEUDO.get(name, 0)
            if not bit or pseudo & bit or regular:
                raise _malformed(f"pseudo-header field {name[:64]!r} unknown, repeated or after the others")
            pseudo |= bit
            if bit == _METHOD:
                method = value
            elif bit == _PATH:
                path = value
            elif bit == _AUTHORITY:
                authority = value
            elif bit == _SCHEME and value not in (b"http", b"https"):
                raise BadRequest("unsupported_scheme", "only http and https requests are proxied")
            continue
        regular = True
        problem = field_problem(name, value)
        if problem:
            raise _malformed(problem)
        if name == b"cookie":  # split into several fields for compression (RFC 9113 8.2.3): one again
            if cookies is None:
                cookies = []
            cookies.append(value)
            continue
        if len(headers) >= limits.max_headers:
            raise HeadersTooLarge("too_many_headers", f"more than {limits.max_headers} header fields")
        if single(name):
            if name in seen:
                raise BadRequest("duplicate_header", f"more than one {name.decode('latin-1')} header")
            seen.add(name)
        if name == b"host":
            if host is not None:
                raise BadRequest("duplicate_host", "more than one Host header")
            host = value
            continue
        if name == b"expect":  # the whole body is read before anything is sent: nothing to continue
            if value.lower() != b"100-continue":
                raise BadRequest("unsupported_expect", "only 'Expect: 100-continue' is supported")
            continue
        if name == b"x-request-id":
            if not value or trust.drop_request_id:
                continue
            request_id = value
        elif name == b"x-forwarded-for":
            if trust.replace_forwarded:
                continue
            if hops:
                if xff is None:
                    xff = []
                xff.append(value)
        elif name in FORWARDED:
            if trust.replace_forwarded:
                continue
        elif name == b"x-forwarded-proto":
            if not hops:
                continue  # the connection's scheme is sent instead (upstream/headers.py)
        elif name == b"traceparent" or name == b"tracestate":
            if trust.drop_trace:
                continue
        elif name == b"content-length" and value.isdigit() and int(value) > limits.max_body_bytes:
            raise PayloadTooLarge("body_too_large", f"body of {int(value)} bytes exceeds {limits.max_body_bytes}")
        headers.append((name, value))
    if not pseudo & _METHOD:
        raise _malformed("no :method")
    if method != b"CONNECT":
        if pseudo & _PROTOCOL:
            raise _malformed(":protocol without CONNECT")
        if not pseudo & _SCHEME or not path:
            raise _malformed("no :scheme or no :path")
    if cookies is not None:
        if len(headers) >= limits.max_headers:
            raise HeadersTooLarge("too_many_headers", f"more than {limits.max_headers} header fields")
        headers.append((b"cookie", b"; ".join(cookies)))
    if size > limits.max_header_bytes:
        raise HeadersTooLarge()
    if method == b"CONNECT":
        raise BadRequest("upgrade_not_supported", "CONNECT (tunnelling) is not proxied")
    target = _target(method, path, limits)
    if not authority and host is None:
        raise BadRequest("missing_host", "an HTTP/2 request needs :authority (or host)")
    checked = _authority(authority or host or b"")
    if authority and host is not None and not _authority(host).same_as(checked, b"http"):
        raise BadRequest("host_mismatch", ":authority and the host header name different hosts")
    headers.append((b"host", checked.value))
    client = client_address(xff, hops, peer) if xff is not None else peer
    return Request(method, target, headers, host=checked.name, version=b"2", client=client, peer=peer,
                   scheme=scheme, request_id=request_id, received_at=now)


def _authority(raw: bytes) -> Authority:
    """`parse_authority(raw)`, kept for the authorities seen before (a connection's requests name the same few; an
    `Authority` is never changed once made): at most `MAX_AUTHORITIES`, then started over. One refused is not kept."""
    found = _AUTHORITIES.get(raw)
    if found is None:
        found = parse_authority(raw)
        if len(_AUTHORITIES) >= MAX_AUTHORITIES:
            _AUTHORITIES.clear()
        _AUTHORITIES[raw] = found
    return found


def _target(method: bytes, path: bytes, limits: ParserLimits) -> bytes:
    if path == b"*":
        if method != b"OPTIONS":
            raise BadRequest("invalid_target", "the target '*' is for OPTIONS only")
        return path
    if path[:1] != b"/":
        raise BadRequest("invalid_target", "an HTTP/2 :path must begin with '/'")
    if 35 in path:  # '#' (an int operand: a native byte search; see http/parser.py)
        raise BadRequest("fragment_in_target", "a request target has no fragment (#)")
    raw, mark, query = path.partition(b"?")
    # The listener's rules (normalising, merging slashes, escaped slashes, `;`) as for HTTP/1.1.
    return normalize_path(raw, limits.paths) + mark + query


def trailer_fields(fields: Headers, limits: ParserLimits) -> Headers:
    """A request's trailers (gRPC metadata at the end of a stream): no pseudo-header, within the limits."""
    out: Headers = []
    size = 0
    for name, value in fields:
        if name[:1] == b":":
            raise BadRequest("malformed_request", "a pseudo-header field in trailers")
        problem = field_problem(name, value)
        if problem:
            raise _malformed(problem)
        size += len(name) + len(value) + FIELD_OVERHEAD
        out.append((name, value))
    if len(out) > limits.max_headers:
        raise HeadersTooLarge("too_many_headers", f"more than {limits.max_headers} trailer fields")
    if size > limits.max_header_bytes:
        raise HeadersTooLarge()
    return out


__all__ = ["build_request", "trailer_fields"]
