"""Pure request matching: host (exact or `*.suffix`), path (exact or prefix), methods, headers.

Compiled from config once per snapshot; `RouteTable.match` returns the first route that matches. The path and
host matched are the ones the request reader settled (http/parser.py): the normalised path that policies match
and the upstream receives, the host in lower case without its port or trailing dot. A route's `path` and
`path_prefix` are therefore written in that normal form (docs/data-plane.md, "Paths").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from meshbatch.config.plain import HeaderMatch, Match
from meshbatch.http.message import Request

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class HeaderRule:
    name: bytes
    exact: bytes | None
    prefix: bytes | None
    present: bool | None
    invert: bool

    @classmethod
    def compile(cls, spec: HeaderMatch) -> HeaderRule:
        return cls(
            spec.name.lower().encode(),
            spec.exact.encode() if spec.exact is not None else None,
            spec.prefix.encode() if spec.prefix is not None else None,
            spec.present,
            spec.invert,
        )

    def matches(self, request: Request) -> bool:
        value = request.header(self.name)
        if self.exact is not None:
            ok = value == self.exact
        elif self.prefix is not None:
            ok = value is not None and value.startswith(self.prefix)
        elif self.present is False:
            ok = value is None
        else:
            ok = value is not None
        return ok != self.invert


class RouteMatcher:
    __slots__ = ("exact_hosts", "headers", "methods", "path", "path_prefix", "suffixes")

    def __init__(self, match: Match) -> None:
        hosts = [match.host] if isinstance(match.host, str) else list(match.host or [])
        self.exact_hosts = frozenset(h.lower().encode() for h in hosts if not h.startswith("*."))
        self.suffixes = tuple(h[1:].lower().encode() for h in hosts if h.startswith("*."))
        self.path = match.path.encode() if match.path is not None else None
        self.path_prefix = match.path_prefix.encode() if match.path_prefix not in (None, "/") else None
        self.methods = frozenset(m.encode() for m in match.methods) if match.methods else None
        self.headers = tuple(HeaderRule.compile(h) for h in match.headers)

    def matches(self, request: Request) -> bool:
        if self.exact_hosts or self.suffixes:
            host = request.host
            if host not in self.exact_hosts and not (self.suffixes and _has_suffix(host, self.suffixes)):
                return False
        if self.path is not None:
            if request.path != self.path:
                return False
        elif self.path_prefix is not None and not _under(request.path, self.path_prefix):
            return False
        if self.methods is not None and request.method not in self.methods:
            return False
        return all(rule.matches(request) for rule in self.headers)


def _has_suffix(host: bytes, suffixes: tuple[bytes, ...]) -> bool:
    # "*.example.com" matches "a.example.com" and "a.b.example.com", not "example.com".
    return any(host.endswith(s) and len(host) > len(s) for s in suffixes)


def _under(path: bytes, prefix: bytes) -> bool:
    return path.startswith(prefix)


class RouteTable(Generic[T]):
    """Routes in order; the first match wins."""

    __slots__ = ("entries",)

    def __init__(self, entries: Sequence[tuple[RouteMatcher, T]]) -> None:
        self.entries = tuple(entries)

    def match(self, request: Request) -> T | None:
        for matcher, target in self.entries:
            if matcher.matches(request):
                return target
        return None


__all__ = ["HeaderRule", "RouteMatcher", "RouteTable"]
