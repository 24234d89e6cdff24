"""String patterns of policies and the canonical request path they are matched against. Pure.

A pattern is an exact string, or one with `*` wildcards (each matches any run of characters, `/` included):
`/api/*` (prefix), `*.internal` (suffix), `*` (anything present), `spiffe://td/ns/*/sa/reader`.

Paths: policies match the request's path exactly as routes matched it and as the upstream receives it: the
parser normalised it once (http/paths.py: `/x/../admin`, `/%61dmin` and `//admin` are all `/admin` by then,
and `%2F`, `\\`, NUL or a bad escape never got this far). So a pattern is written in that normal form: unreserved
characters plain, other escapes in upper-case hex, still encoded (`/files/a%20b`, not `/files/a b`).
`canonical_path` returns that path as text, and refuses one that is not in normal form (a listener with
normalisation turned off, or a request that did not come through the parser).
"""

from __future__ import annotations

from collections.abc import Iterable

from meshbatch.errors import BadRequest
from meshbatch.http.paths import PathRules, normalize_path

# The strictest form any listener yields: normalised and merged (escaped slashes and `;` as a listener allows).
_POLICY_FORM = PathRules(normalize=True, merge_slashes=True, escaped_slashes="keep", path_parameters="keep")


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
    """The path to match policies on (the request's normalised path itself), or None when `raw` is not in
    normal form (a caller then answers 400 `ambiguous_path`): a request that did not come through the parser, or
    one from a listener with `normalize` or `merge_slashes` turned off whose path has dot segments, `//` or
    escapes that decode (a policy must never match one spelling of a path while the upstream resolves another)."""
    if raw == b"*":
        return "*"
    if raw[:1] != b"/":
        return None
    try:
        if normalize_path(raw, _POLICY_FORM) != raw:
            return None
    except BadRequest:
        return None
    return raw.decode("ascii")


__all__ = ["Glob", "canonical_path"]
