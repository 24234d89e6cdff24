"""String patterns of policies and the canonical request path they are matched against. Pure.

A pattern is an exact string, or one with `*` wildcards (each matches any run of characters, `/` included):
`/api/*` (prefix), `*.internal` (suffix), `*` (anything present), `spiffe://td/ns/*/sa/reader`.

Paths: a policy on `/admin*` must not be walked around with `/x/../admin`, `/%61dmin`, `//admin` or
`/admin%2F..`, which an upstream may resolve to `/admin`. `canonical_path` decodes percent-escapes, merges
repeated slashes, and refuses what it cannot make unambiguous (dot segments, encoded `/` or `\\`, a backslash,
NUL, a bad escape or invalid UTF-8): the request is then answered 400 and never evaluated or forwarded.
"""

from __future__ import annotations

from collections.abc import Iterable

_HEX = frozenset(b"0123456789abcdefABCDEF")


class _Wild:
    """One pattern with `*`s: its fixed parts, matched left to right without backtracking.

    For `*`-only globs the leftmost occurrence of each middle part is always a safe choice (a later one leaves
    less room for what follows, never more), so one `str.find` per part decides: the cost is linear in the
    length of the value, whatever the number of stars. (A regex of `.*` alternatives backtracks: a long path
    against a pattern with several stars took time polynomial in its length.)
    """

    __slots__ = ("middle", "min_length", "prefix", "suffix")

    def __init__(self, pattern: str) -> None:
        parts = pattern.split("*")
        self.prefix = parts[0]
        self.suffix = parts[-1]
        self.middle = tuple(part for part in parts[1:-1] if part)
        self.min_length = len(self.prefix) + len(self.suffix) + sum(len(part) for part in self.middle)

    def match(self, value: str) -> bool:
        if len(value) < self.min_length or not value.startswith(self.prefix) or not value.endswith(self.suffix):
            return False
        position = len(self.prefix)
        end = len(value) - len(self.suffix)
        for part in self.middle:
            found = value.find(part, position, end)
            if found < 0:
                return False
            position = found + len(part)
        return True


class Glob:
    """Matches a string against a set of patterns: exact ones by set lookup, wildcard ones in linear time."""

    __slots__ = ("_exact", "_wild", "any", "patterns")

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(patterns)
        self.any = any(p and not p.strip("*") for p in self.patterns)  # `*`, `**`, ...: anything present
        self._exact = frozenset(p for p in self.patterns if "*" not in p)
        self._wild = tuple(_Wild(p) for p in dict.fromkeys(self.patterns) if "*" in p)

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def match(self, value: str) -> bool:
        if value in self._exact or self.any:
            return True
        return any(wild.match(value) for wild in self._wild)

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
