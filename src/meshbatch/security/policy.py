"""Authorization policies compiled once per config snapshot and evaluated per request. Pure.

Istio's AuthorizationPolicy semantics: a DENY policy that matches denies (DENY wins); when there are ALLOW
policies one of them must match, otherwise the request is denied; with DENY policies only, what none denies is
allowed. A policy matches when any of its rules does; a rule when `from`, `to` and `when` all do; `from` (and
`to`) when any of its entries does; an entry when every field it sets does; a field when any of its values does
and none of its `not_` values does.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from meshbatch.errors import BadRequest
from meshbatch.http.message import Request
from meshbatch.security import identity as ctx
from meshbatch.security.model import Condition, Operation, Policy, Rule, Source
from meshbatch.security.patterns import Glob, canonical_path
from meshbatch.security.spiffe import InvalidSpiffeId, SpiffeId

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    policy: str = ""  # the policy that decided ("" when none matched)
    reason: str = ""  # authz_denied (a DENY matched) | authz_no_match (no ALLOW matched)


ALLOWED = Decision(True)


class Attributes:
    """What rules look at, computed at most once per request."""

    __slots__ = ("_namespace", "path", "principal", "request")

    def __init__(self, request: Request) -> None:
        path = canonical_path(request.path)
        if path is None:
            raise BadRequest("ambiguous_path", "the path has dot segments, encoded slashes or bad escapes")
        self.request = request
        self.path = path
        identity = ctx.peer_identity(request)
        self.principal = identity.removeprefix("spiffe://") if identity else None
        self._namespace: str | bool | None = False

    @property
    def namespace(self) -> str | None:
        if self._namespace is False:
            identity = ctx.peer_identity(self.request)
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
        if not self.request_principals.match(ctx.request_principal(attrs.request)):
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


def _getter(key: str) -> Callable[[Attributes], str | list[str] | None]:
    if key == "source.principal":
        return lambda a: a.principal
    if key == "source.namespace":
        return lambda a: a.namespace
    if key == "source.ip":
        return lambda a: a.request.client or None
    if key == "request.auth.principal":
        return lambda a: ctx.request_principal(a.request)
    if key.startswith("request.headers["):
        name = key[len("request.headers["):-1].lower().encode()

        def header(a: Attributes) -> str | None:
            value = a.request.header(name)
            return None if value is None else value.decode("latin-1")

        return header
    path = key[len("request.auth.claims["):-1].split("][")

    def claim(a: Attributes) -> str | list[str] | None:
        value = _claim(ctx.claims(a.request), path)
        if value is None:
            return None
        if isinstance(value, list):
            return [str(v) for v in value]
        return str(value).lower() if isinstance(value, bool) else str(value)

    return claim


class _Condition:
    __slots__ = ("field", "get")

    def __init__(self, spec: Condition) -> None:
        self.get = _getter(spec.key)
        self.field = _Field(Glob(spec.values), Glob(spec.not_values))

    def match(self, attrs: Attributes) -> bool:
        value = self.get(attrs)
        if isinstance(value, list):
            return self.field.match_any(value)
        return self.field.match(value)


class _Rule:
    __slots__ = ("conditions", "operations", "sources")

    def __init__(self, spec: Rule) -> None:
        self.sources = [_Source(f.source) for f in spec.from_]
        self.operations = [_Operation(t.operation) for t in spec.to]
        self.conditions = [_Condition(c) for c in spec.when]

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
        self.rules = [_Rule(r) for r in spec.rules]

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

    def decide(self, request: Request) -> Decision:
        """Raises BadRequest (ambiguous_path) when the path cannot be matched safely."""
        attrs = Attributes(request)
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
