"""String patterns of policies and the canonical request path they are matched against. Pure.

A pattern is an exact string, or one with `*` wildcards (each matches any run of characters, `/` included):
`/api/*` (prefix), `*.internal` (suffix), `*` (anything present), `spiffe://td/ns/*/sa/reader`.

Paths: a policy on `/admin*` must not be walked around with `/x/../admin`, `/%61dmin`, `//admin` or
`/admin%2F..`, which an upstream may resolve to `/admin`. `canonical_path` decodes percent-escapes, merges
repeated slashes, and refuses what it cannot make unambiguous (dot segments, encoded `/` or `\\`, a backslash,
NUL, a bad escape or invalid UTF-8): the request is then answered 400 and never evaluated or forwarded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_HEX = frozenset(b"0123456789abcdefABCDEF")


class Glob:
    """Matches a string against a set of patterns (exact ones by set lookup, wildcard ones by one regex)."""

    __slots__ = ("_exact", "_regex", "any", "patterns")

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(patterns)
        self.any = "*" in self.patterns
        self._exact = frozenset(p for p in self.patterns if "*" not in p)
        wild = [p for p in self.patterns if "*" in p]
        self._regex = re.compile("|".join(".*".join(re.escape(part) for part in p.split("*")) for p in wild),
                                 re.DOTALL) if wild else None

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def match(self, value: str) -> bool:
        if value in self._exact or self.any:
            return True
        regex = self._regex
        return regex is not None and regex.fullmatch(value) is not None

    def __repr__(self) -> str:
        return f"Glob({list(self.patterns)!r})"


def canonical_path(raw: bytes) -> str | None:
    """The path to match policies on, or None when `raw` is ambiguous (see the module docstring)."""
    if raw == b"*":
        return "*"
    if b"\\" in raw or b"\x00" in raw or not raw.startswith(b"/"):
        return None
    if b"%" in raw:
        out = bytearray()
        i, n = 0, len(raw)
        while i < n:
            c = raw[i]
            if c == 0x25:  # '%'
                if i + 2 >= n or raw[i + 1] not in _HEX or raw[i + 2] not in _HEX:
                    return None
                byte = int(raw[i + 1:i + 3], 16)
                if byte in (0x2F, 0x5C, 0x00):  # an encoded '/', '\' or NUL: the upstream may split on it
                    return None
                out.append(byte)
                i += 3
            else:
                out.append(c)
                i += 1
        raw = bytes(out)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    segments = text.split("/")
    kept: list[str] = []
    for segment in segments[1:]:
        if segment in (".", ".."):
            return None
        if segment:
            kept.append(segment)
    path = "/" + "/".join(kept)
    if text.endswith("/") and kept:
        path += "/"
    return path


__all__ = ["Glob", "canonical_path"]
