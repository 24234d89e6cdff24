"""Request paths in one normal form, made once before routing: what routes match, what policies match and what
the upstream receives are the same bytes. Pure.

A proxy that matches one spelling of a path and forwards another can be walked around: a policy on `/admin`
must not be passed by `/x/../admin`, `/%61dmin`, `//admin` or `/admin%2F..`, which an upstream may resolve to
`/admin`. So the path is rewritten here, per RFC 3986 6.2.2, and the rewritten path is the request's path from
then on (Envoy's `normalize_path`, `merge_slashes`, `path_with_escaped_slashes_action`):

- percent-escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded, the hex of every other escape
  is upper-cased (`%2f` -> `%2F`), and characters a path may not hold raw (`"<>[]^`{|}`) are escaped;
- `.` and `..` segments are resolved (never above the root) and repeated slashes merged, after decoding, so
  `/%2e%2e/` is a dot segment too;
- refused (400), because no rewriting makes them unambiguous: a backslash, a control character (raw or
  escaped, NUL included), a bad escape, a path that is not UTF-8 once decoded; by default also an escaped
  slash or backslash (`%2F`, `%5C`: some upstreams split on them, some do not) and a `;` (path parameters:
  Tomcat and Spring cut `/admin;x` to `/admin`).

What stays as it is, on purpose: letter case (paths are case-sensitive), a segment ending in a dot (`/v1.` is a
different resource; Wikipedia's `/wiki/Washington,_D.C.` is a real path), escapes of reserved or non-ASCII
characters (`%20` stays `%20`: policies match the still-encoded form) and the query string.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from meshbatch.errors import BadRequest

EscapedSlashes = Literal["reject", "keep", "unescape"]
PathParameters = Literal["reject", "keep"]


@dataclass(frozen=True, slots=True)
class PathRules:
    """A listener's `path_normalization` block (docs/data-plane.md)."""

    normalize: bool = True  # decode unreserved escapes, upper-case hex, resolve dot segments
    merge_slashes: bool = True
    escaped_slashes: EscapedSlashes = "reject"  # %2F and %5C
    path_parameters: PathParameters = "reject"  # ';'


DEFAULT_RULES = PathRules()

# A path none of whose bytes can need work is returned as it is: one C-level search on the hot path.
_NEEDS_WORK = re.compile(rb'[%;#\\"<>\[\]^`{|}\x00-\x20\x7f-\xff]|//|/\.\.?(?:/|\Z)')
_HEX = b"0123456789abcdefABCDEF"
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# Printable characters llhttp lets through that RFC 3986 does not allow raw in a path.
_TO_ESCAPE = frozenset(b'"<>[]^`{|}')


def _refuse(detail: str) -> BadRequest:
    return BadRequest("invalid_path", detail)


def normalize_path(path: bytes, rules: PathRules = DEFAULT_RULES) -> bytes:
    """The normal form of an origin-form path (no query), or BadRequest. Returns `path` itself when unchanged."""
    if _NEEDS_WORK.search(path) is None:
        return path
    if path[:1] != b"/":
        raise _refuse("the path must begin with '/'")
    out = bytearray()
    decoded = bytearray()  # every escape decoded: the UTF-8 check
    normalize = rules.normalize
    i, n = 0, len(path)
    while i < n:
        c = path[i]
        if c == 0x25:  # '%'
            if i + 2 >= n or path[i + 1] not in _HEX or path[i + 2] not in _HEX:
                raise _refuse("a bad percent-escape")
            value = int(path[i + 1:i + 3], 16)
            decoded.append(value)
            if value == 0x2F or value == 0x5C:
                action = rules.escaped_slashes
                if action == "reject" or (action == "unescape" and value == 0x5C):
                    raise BadRequest("escaped_slash_in_path", "an escaped '/' or '\\' (%2F, %5C) in the path")
                if action == "unescape":
                    out.append(0x2F)
                else:
                    out += b"%%%02X" % value
            elif value < 0x20 or value == 0x7F:
                raise _refuse("an escaped control character")
            elif normalize and value in _UNRESERVED:
                out.append(value)
            elif normalize:
                out += b"%%%02X" % value
            else:
                out += path[i:i + 3]
            i += 3
            continue
        if c == 0x5C:  # '\'
            raise _refuse("a backslash")
        if c == 0x23:  # '#' (the parser refuses a fragment before; this is for paths from elsewhere)
            raise BadRequest("fragment_in_target", "a request target has no fragment (#)")
        if c <= 0x20 or c == 0x7F:
            raise _refuse("a space or control character")
        if c == 0x3B and rules.path_parameters == "reject":  # ';'
            raise BadRequest("path_parameters", "';' (path parameters) in the path")
        decoded.append(c)
        if normalize and (c in _TO_ESCAPE or c > 0x7F):
            out += b"%%%02X" % c
        else:
            out.append(c)
        i += 1
    try:
        bytes(decoded).decode("utf-8")
    except UnicodeDecodeError:
        raise _refuse("the path is not UTF-8 once decoded") from None
    return _segments(bytes(out), normalize, rules.merge_slashes)


def _segments(path: bytes, dots: bool, merge: bool) -> bytes:
    """Dot segments resolved (RFC 3986 5.2.4; `..` never climbs above the root) and empty segments merged."""
    if not dots and not merge:
        return path
    kept: list[bytes] = []
    trailing = False  # the last segment removed leaves a '/': `/a/b/..` is `/a/`
    for segment in path.split(b"/")[1:]:
        if dots and segment == b".":
            trailing = True
        elif dots and segment == b"..":
            if kept:
                kept.pop()
            trailing = True
        elif merge and not segment:
            trailing = True
        else:
            kept.append(segment)
            trailing = False
    if not kept:
        return b"/"
    return b"/" + b"/".join(kept) + (b"/" if trailing else b"")


__all__ = ["DEFAULT_RULES", "EscapedSlashes", "PathParameters", "PathRules", "normalize_path"]
