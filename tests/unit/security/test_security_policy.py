"""Policy evaluation (Istio semantics), patterns and canonical paths, token buckets on a fake clock."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshbatch.clock import FakeClock
from meshbatch.config.model.security import Policy
from meshbatch.core.buckets import KeyedBuckets, TokenBucket
from meshbatch.errors import BadRequest
from meshbatch.http.message import Request
from meshbatch.security.patterns import Glob, canonical_path
from meshbatch.security.policy import Authorizer, Decision
from meshbatch.service import Call


def req(path: str = "/", method: str = "GET", identity: str | None = None, client: str = "10.0.0.1",
        headers: list[tuple[bytes, bytes]] | None = None, host: str = "svc", principal: str | None = None,
        claims: dict[str, Any] | None = None) -> Call:
    """A request as the stack holds it: the peer's identity (mTLS), a validated token's principal and claims."""
    call = Call(Request(method.encode(), path.encode(), headers or [], host=host.encode(), client=client))
    call.request.identity = identity
    call.principal = principal
    call.claims = claims
    return call


class Policies:
    """The policies of one layer, judging calls as the stack's policy check does."""

    def __init__(self, authorizer: Authorizer) -> None:
        self.authorizer = authorizer

    def decide(self, call: Call) -> Decision:
        return self.authorizer.decide(call.request, call.principal, call.claims)


def authz(*policies: dict[str, Any]) -> Policies:
    return Policies(Authorizer([Policy.model_validate(p) for p in policies]))


def allow(**rule: Any) -> dict[str, Any]:
    return {"name": f"allow-{len(rule)}", "action": "ALLOW", "rules": [rule]}


def deny(**rule: Any) -> dict[str, Any]:
    return {"name": "deny", "action": "DENY", "rules": [rule]}


def test_no_policies_allow_and_deny_only_allows_the_rest() -> None:
    assert authz().decide(req()).allowed
    only_deny = authz(deny(to=[{"operation": {"paths": ["/admin*"]}}]))
    assert only_deny.decide(req("/x")).allowed
    assert only_deny.decide(req("/admin/a")).reason == "authz_denied"


def test_deny_wins_over_allow_and_no_match_denies() -> None:
    a = authz(allow(to=[{"operation": {"paths": ["/public*"]}}]),
              deny(**{"from": [{"source": {"namespaces": ["legacy"]}}]}))
    assert a.decide(req("/public/x", identity="spiffe://td/ns/shop/sa/a")).allowed
    assert a.decide(req("/public/x", identity="spiffe://td/ns/legacy/sa/a")).reason == "authz_denied"
    assert a.decide(req("/private")).reason == "authz_no_match"


def test_allow_with_no_rules_allows_nothing_and_an_empty_rule_everything() -> None:
    assert not authz({"name": "none", "action": "ALLOW"}).decide(req()).allowed
    assert authz({"name": "all", "action": "ALLOW", "rules": [{}]}).decide(req()).allowed


@pytest.mark.parametrize(("pattern", "identity", "matched"), [
    ("spiffe://td/ns/shop/sa/web", "spiffe://td/ns/shop/sa/web", True),
    ("td/ns/shop/sa/web", "spiffe://td/ns/shop/sa/web", True),  # Istio's form, without the scheme
    ("spiffe://td/ns/shop/*", "spiffe://td/ns/shop/sa/web", True),
    ("*/sa/web", "spiffe://td/ns/other/sa/web", True),
    ("spiffe://td/ns/*/sa/reader", "spiffe://td/ns/a/sa/writer", False),
    ("*", None, False),  # presence: plaintext peers have no principal
])
def test_principal_patterns(pattern: str, identity: str | None, matched: bool) -> None:
    a = authz(allow(**{"from": [{"source": {"principals": [pattern]}}]}))
    assert a.decide(req(identity=identity)).allowed is matched


def test_not_principals_star_denies_plaintext_only() -> None:
    a = authz(deny(**{"from": [{"source": {"not_principals": ["*"]}}]}))
    assert not a.decide(req()).allowed
    assert a.decide(req(identity="spiffe://td/ns/a/sa/b")).allowed


def test_fields_and_within_a_source_or_across_sources() -> None:
    a = authz(allow(**{"from": [{"source": {"namespaces": ["shop"], "ip_blocks": ["10.0.0.0/8"]}},
                                {"source": {"request_principals": ["https://iss/*"]}}]}))
    assert a.decide(req(identity="spiffe://td/ns/shop/sa/x", client="10.1.2.3")).allowed
    assert not a.decide(req(identity="spiffe://td/ns/shop/sa/x", client="192.168.1.1")).allowed
    assert a.decide(req(client="192.168.1.1", principal="https://iss/alice")).allowed


def test_operations_methods_hosts_and_not_paths() -> None:
    a = authz(allow(to=[{"operation": {"methods": ["get"], "hosts": ["*.Internal"], "not_paths": ["/secret*"]}}]))
    assert a.decide(req("/x", host="api.internal")).allowed
    assert not a.decide(req("/x", method="POST", host="api.internal")).allowed
    assert not a.decide(req("/x", host="api.public")).allowed
    assert not a.decide(req("/secret/1", host="api.internal")).allowed


def test_conditions_on_headers_claims_and_principal() -> None:
    a = authz(allow(when=[{"key": "request.headers[x-tenant]", "values": ["acme", "beta-*"]},
                          {"key": "request.auth.claims[groups]", "values": ["admin"]},
                          {"key": "request.auth.claims[org][tier]", "not_values": ["free"]}]))
    claims = {"groups": ["dev", "admin"], "org": {"tier": "gold"}}
    assert a.decide(req(headers=[(b"x-tenant", b"beta-2")], claims=claims)).allowed
    assert not a.decide(req(headers=[(b"x-tenant", b"other")], claims=claims)).allowed
    assert not a.decide(req(headers=[(b"x-tenant", b"acme")], claims={**claims, "org": {"tier": "free"}})).allowed
    assert not a.decide(req(headers=[(b"x-tenant", b"acme")])).allowed  # no claims at all


def _roles(*values: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"x-role", v) for v in values]


@pytest.mark.parametrize(("values", "allowed"), [
    ((b"admin",), True), ((b"admin", b"admin"), True), ((b"admin", b"guest"), False), ((b"guest", b"admin"), False),
    ((b"admin", b"banned"), False), ((), False),
])
def test_allow_on_a_repeated_header_needs_every_value_to_match(values: tuple[bytes, ...], allowed: bool) -> None:
    a = authz(allow(when=[{"key": "request.headers[x-role]", "values": ["admin", "banned"],
                           "not_values": ["banned"]}]))
    assert a.decide(req(headers=_roles(*values))).allowed is allowed


@pytest.mark.parametrize(("values", "denied"), [
    ((b"guest",), False), ((b"guest", b"guest"), False), ((b"guest", b"prod"), True), ((b"prod", b"guest"), True),
    ((), False),
])
def test_deny_on_a_repeated_header_applies_when_any_value_matches(values: tuple[bytes, ...], denied: bool) -> None:
    a = authz(deny(when=[{"key": "request.headers[x-role]", "values": ["prod"]}]))
    assert (a.decide(req(headers=_roles(*values))).reason == "authz_denied") is denied


@pytest.mark.parametrize(("values", "denied"), [
    ((b"internal",), False), ((b"internal", b"internal"), False), ((b"internal", b"evil"), True),
    ((b"evil", b"internal"), True),
])
def test_deny_not_values_on_a_repeated_header_fails_closed(values: tuple[bytes, ...], denied: bool) -> None:
    a = authz(deny(when=[{"key": "request.headers[x-role]", "not_values": ["internal"]}]))
    assert (a.decide(req(headers=_roles(*values))).reason == "authz_denied") is denied


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(st.sampled_from([b"admin", b"guest", b"prod", b"x"]), min_size=1, max_size=4),
       st.sampled_from([b"admin", b"guest", b"prod", b"x"]))
def test_adding_a_header_value_never_earns_an_allow_nor_escapes_a_deny(values: list[bytes], extra: bytes) -> None:
    allows = authz(allow(when=[{"key": "request.headers[x-role]", "values": ["admin", "prod"],
                                "not_values": ["prod"]}]))
    denies = authz(deny(when=[{"key": "request.headers[x-role]", "values": ["prod", "x"], "not_values": ["x"]}]))
    for position in range(len(values) + 1):
        more = _roles(*values[:position], extra, *values[position:])
        assert allows.decide(req(headers=more)).allowed <= allows.decide(req(headers=_roles(*values))).allowed
        assert denies.decide(req(headers=more)).allowed <= denies.decide(req(headers=_roles(*values))).allowed


@pytest.mark.parametrize(("raw", "canonical"), [
    # Policies match the parser's normalised path as it is (http/paths.py), still encoded where it is encoded;
    # `%2F`/`%5C` and `;` reach them only from a listener that keeps them.
    (b"/a/b", "/a/b"), (b"/a/b/", "/a/b/"), (b"/a%20b", "/a%20b"), (b"/caf%C3%A9", "/caf%C3%A9"), (b"*", "*"),
    (b"/a%2Fb", "/a%2Fb"), (b"/a;b", "/a;b"),
    # Anything else is not a path the parser hands on with normalisation on: refused, never matched.
    (b"/a//b/", None), (b"/%61dmin", None), (b"/a%2fb", None), (b"/caf%c3%a9", None),
    (b"/a/../b", None), (b"/a/./b", None), (b"/a\\b", None), (b"/a%00b", None), (b"/a#b", None),
    (b"/%2e%2e/x", None), (b"/bad%zz", None), (b"/bad%2", None), (b"/%ff", None), (b"relative", None),
])
def test_canonical_paths(raw: bytes, canonical: str | None) -> None:
    assert canonical_path(raw) == canonical


def test_an_ambiguous_path_is_a_400_not_a_decision() -> None:
    with pytest.raises(BadRequest) as caught:
        authz(deny(to=[{"operation": {"paths": ["/admin*"]}}])).decide(req("/x/../admin"))
    assert caught.value.reason == "ambiguous_path"


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.binary(max_size=64))
def test_canonical_paths_are_stable(raw: bytes) -> None:
    once = canonical_path(raw)
    if once is not None and once != "*":
        assert canonical_path(once.encode()) == once  # canonical form is a fixed point
        assert "/../" not in once + "/" and "//" not in once


def test_glob() -> None:
    glob = Glob(["exact", "pre*", "*suf", "a*b*c"])
    assert [glob.match(v) for v in ("exact", "prefix", "asuf", "aXbYc", "nope", "ab")] == \
        [True, True, True, True, False, False]
    assert not Glob([]) and Glob(["*"]).match("anything")


def test_token_bucket_and_keyed_buckets_on_a_fake_clock() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=2.0, burst=2, now=clock.now())
    assert [bucket.try_take(clock.now()) for _ in range(3)] == [0.0, 0.0, 0.5]
    clock.advance(0.5)
    assert bucket.try_take(clock.now()) == 0.0
    keyed = KeyedBuckets(rate=1.0, burst=1, max_keys=2)
    assert keyed.try_take("a", clock.now()) == 0.0 and keyed.try_take("a", clock.now()) > 0
    assert keyed.try_take("b", clock.now()) == 0.0 and keyed.try_take("c", clock.now()) == 0.0
    assert len(keyed) == 2  # "a", least recently used, was dropped
