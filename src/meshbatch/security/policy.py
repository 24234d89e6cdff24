"""Authorization policies compiled once per config snapshot and evaluated per request. Pure.

Istio's AuthorizationPolicy semantics: a DENY policy that matches denies (DENY wins); when there are ALLOW
policies one of them must match, otherwise the request is denied; with DENY policies only, what none denies is
allowed. A policy matches when any of its rules does; a rule when `from`, `to` and `when` all do; `from` (and
`to`) when any of its entries does; an entry when every field it sets does; a field when any of its values does
and none of its `not_` values does.

A header sent several times (`request.headers[NAME]` with two `x-role` lines) is judged on every value, never on
the one that happens to come first, and always in the direction that fails closed: in an ALLOW policy the
condition matches only when each value matches (some value in `values`, none in `not_values`); in a DENY
policy it matches when any value does. So a caller who adds a value can neither earn an ALLOW nor slip out of
a DENY. (Istio matches the values joined by commas as one string.) List-valued JWT claims keep Istio's rule:
they match when one of their elements does; they are signed by the issuer, not chosen by the caller.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from meshbatch.config.plain.security import Condition, Operation, Policy, Rule, Source
from meshbatch.core.spiffe import InvalidSpiffeId, SpiffeId
from meshbatch.errors import BadRequest
from meshbatch.http.message import Request
from meshbatch.security.patterns import Glob, canonical_path

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    policy: str = ""  # the policy that decided ("" when none matched)
    reason: str = ""  # authz_denied (a DENY matched) | authz_no_match (no ALLOW matched)


ALLOWED = Decision(True)


class Attributes:
    """What rules look at, computed at most once per request: the request (its peer identity, client address,
    path, headers) and what authentication found out (the JWT's principal and claims)."""

    __slots__ = ("_namespace", "claims", "path", "principal", "request", "request_principal")

    def __init__(self, request: Request, request_principal: str | None = None,
                 claims: dict[str, Any] | None = None) -> None:
        path = canonical_path(request.path)
        if path is None:
            raise BadRequest("ambiguous_path", "the path has dot segments, encoded slashes or bad escapes")
        self.request = request
        self.path = path
        identity = request.identity
        self.principal = identity.removeprefix("spiffe://") if identity else None
        self.request_principal = request_principal
        self.claims: dict[str, Any] = claims if claims is not None else {}
        self._namespace: str | bool | None = False

    @property
    def namespace(self) -> str | None:
        if self._namespace is False:
            identity = self.request.identity
            try:
                self._namespace = SpiffeId.parse(identity).namespace if identity else None
            except InvalidSpiffeId:
                self._namespace = None
        value = self._namespace
        return value if isinstance(value, str) else None


def _strip(patterns: Sequence[str]) -> Glob:
    return Glob(p.removeprefix("spiffe://") for p in patterns)


class _Field:
    """values / not_values of one attribute; an absent attribute matches no value and is excluded by none."""

    __slots__ = ("neg", "pos")

    def __init__(self, pos: Glob, neg: Glob) -> None:
        self.pos = pos
        self.neg = neg

    def match(self, value: str | None) -> bool:
        if self.pos and (value is None or not self.pos.match(value)):
            return False
        return not (self.neg and value is not None and self.neg.match(value))

    def match_any(self, values: list[str]) -> bool:
        """For list-valued claims: some value matches `pos` (if set) and none matches `neg`."""
        if self.pos and not any(self.pos.match(v) for v in values):
            return False
        return not (self.neg and any(self.neg.match(v) for v in values))

    def match_each(self, values: list[str]) -> bool:
        """Every value matches on its own (a repeated header in an ALLOW policy)."""
        return all(self.match(v) for v in values)

    def match_some(self, values: list[str]) -> bool:
        """Some value matches on its own (a repeated header in a DENY policy)."""
        return any(self.match(v) for v in values)


def _nets(blocks: Sequence[str]) -> tuple[IpNetwork, ...]:
    return tuple(ipaddress.ip_network(b, strict=False) for b in blocks)


def _in(client: str, nets: tuple[IpNetwork, ...]) -> bool:
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return False
    return any(address in net for net in nets)


class _Source:
    __slots__ = ("ips", "namespaces", "not_ips", "principals", "request_principals")

    def __init__(self, spec: Source) -> None:
        self.principals = _Field(_strip(spec.principals), _strip(spec.not_principals))
        self.namespaces = _Field(Glob(spec.namespaces), Glob(spec.not_namespaces))
        self.request_principals = _Field(Glob(spec.request_principals), Glob(spec.not_request_principals))
        self.ips = _nets(spec.ip_blocks)
        self.not_ips = _nets(spec.not_ip_blocks)

    def match(self, attrs: Attributes) -> bool:
        if not self.principals.match(attrs.principal):
            return False
        if (self.namespaces.pos or self.namespaces.neg) and not self.namespaces.match(attrs.namespace):
            return False
        if not self.request_principals.match(attrs.request_principal):
            return False
        client = attrs.request.client
        if self.ips and not _in(client, self.ips):
            return False
        return not (self.not_ips and _in(client, self.not_ips))


class _Operation:
    __slots__ = ("hosts", "methods", "paths")

    def __init__(self, spec: Operation) -> None:
        self.hosts = _Field(Glob(h.lower() for h in spec.hosts), Glob(h.lower() for h in spec.not_hosts))
        self.methods = _Field(Glob(spec.methods), Glob(spec.not_methods))
        self.paths = _Field(Glob(spec.paths), Glob(spec.not_paths))

    def match(self, attrs: Attributes) -> bool:
        request = attrs.request
        return (self.methods.match(request.method.decode("latin-1"))
                and self.paths.match(attrs.path)
                and self.hosts.match(request.host.decode("latin-1")))


def _claim(claims: dict[str, Any], path: list[str]) -> Any:
    node: Any = claims
    for part in path:
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


Getter = Callable[[Attributes], str | list[str] | None]


def _getter(key: str) -> Getter:
    if key == "source.principal":
        return lambda a: a.principal
    if key == "source.namespace":
        return lambda a: a.namespace
    if key == "source.ip":
        return lambda a: a.request.client or None
    if key == "request.auth.principal":
        return lambda a: a.request_principal
    path = key[len("request.auth.claims["):-1].split("][")

    def claim(a: Attributes) -> str | list[str] | None:
        value = _claim(a.claims, path)
        if value is None:
            return None
        if isinstance(value, list):
            return [str(v) for v in value]
        return str(value).lower() if isinstance(value, bool) else str(value)

    return claim


def _header_values(name: bytes) -> Callable[[Attributes], list[str]]:
    """Every value of header `name`, in order (empty when absent)."""

    def values(a: Attributes) -> list[str]:
        return [value.decode("latin-1") for key, value in a.request.headers if key == name]

    return values


class _Condition:
    __slots__ = ("deny", "field", "get", "header")

    def __init__(self, spec: Condition, deny: bool) -> None:
        self.deny = deny  # in a DENY policy: a repeated header matches when any value does (see the docstring)
        self.field = _Field(Glob(spec.values), Glob(spec.not_values))
        self.header: Callable[[Attributes], list[str]] | None = None
        self.get: Getter | None = None
        if spec.key.startswith("request.headers["):
            self.header = _header_values(spec.key[len("request.headers["):-1].lower().encode())
        else:
            self.get = _getter(spec.key)

    def match(self, attrs: Attributes) -> bool:
        if self.header is not None:
            values = self.header(attrs)
            if len(values) <= 1:
                return self.field.match(values[0] if values else None)
            return self.field.match_some(values) if self.deny else self.field.match_each(values)
        assert self.get is not None
        value = self.get(attrs)
        if isinstance(value, list):
            return self.field.match_any(value)
        return self.field.match(value)


class _Rule:
    __slots__ = ("conditions", "operations", "sources")

    def __init__(self, spec: Rule, deny: bool) -> None:
        self.sources = [_Source(f.source) for f in spec.from_]
        self.operations = [_Operation(t.operation) for t in spec.to]
        self.conditions = [_Condition(c, deny) for c in spec.when]

    def match(self, attrs: Attributes) -> bool:
        if self.sources and not any(s.match(attrs) for s in self.sources):
            return False
        if self.operations and not any(o.match(attrs) for o in self.operations):
            return False
        return all(c.match(attrs) for c in self.conditions)


class CompiledPolicy:
    __slots__ = ("action", "name", "rules")

    def __init__(self, spec: Policy) -> None:
        self.name = spec.name
        self.action = spec.action
        self.rules = [_Rule(r, spec.action == "DENY") for r in spec.rules]

    def match(self, attrs: Attributes) -> bool:
        return any(rule.match(attrs) for rule in self.rules)


class Authorizer:
    """The policies of one layer (a listener's, or a route's)."""

    __slots__ = ("allow", "deny", "names")

    def __init__(self, policies: Sequence[Policy]) -> None:
        compiled = [CompiledPolicy(p) for p in policies]
        self.deny = [p for p in compiled if p.action == "DENY"]
        self.allow = [p for p in compiled if p.action == "ALLOW"]
        self.names = tuple(p.name for p in compiled)

    def decide(self, request: Request, principal: str | None = None,
               claims: dict[str, Any] | None = None) -> Decision:
        """`principal` and `claims`: the caller's validated JWT, if any. Raises BadRequest (ambiguous_path) when
        the path cannot be matched safely."""
        attrs = Attributes(request, principal, claims)
        for policy in self.deny:
            if policy.match(attrs):
                return Decision(False, policy.name, "authz_denied")
        if not self.allow:
            return ALLOWED
        for policy in self.allow:
            if policy.match(attrs):
                return Decision(True, policy.name)
        return Decision(False, "", "authz_no_match")


__all__ = ["ALLOWED", "Attributes", "Authorizer", "CompiledPolicy", "Decision"]
