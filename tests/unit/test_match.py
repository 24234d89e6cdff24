"""Route matching: host (exact, `*.suffix`), path (exact, prefix), methods, headers; first match wins."""

from __future__ import annotations

from typing import Any

import pytest

from meshbatch.config.model import Match
from meshbatch.http.message import Request
from meshbatch.routing.match import RouteMatcher, RouteTable


def req(path: str = "/", host: str = "svc", method: str = "GET", headers: dict[str, str] | None = None) -> Request:
    items = [(b"host", host.encode())] + [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    # The parser lower-cases the host and drops the port before routing.
    return Request(method.encode(), path.encode(), items, host=host.lower().encode())


def matches(match: dict[str, Any], request: Request) -> bool:
    return RouteMatcher(Match.model_validate(match)).matches(request)


def test_empty_match_matches_everything() -> None:
    assert matches({}, req("/anything", host="x", method="DELETE"))


@pytest.mark.parametrize(
    ("pattern", "host", "expected"),
    [
        ("service", "service", True),
        ("service", "other", False),
        ("Service", "service", True),  # names are case-insensitive
        ("service", "SERVICE", True),
        ("*.example.com", "a.example.com", True),
        ("*.example.com", "a.b.example.com", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", ".example.com", False),
        ("*.example.com", "badexample.com", False),
        ("*.example.com", "a.example.com.evil", False),
    ],
)
def test_host(pattern: str, host: str, expected: bool) -> None:
    assert matches({"host": pattern}, req(host=host)) is expected


def test_host_list_mixes_exact_and_suffix() -> None:
    match = {"host": ["api", "*.svc.local"]}
    assert matches(match, req(host="api"))
    assert matches(match, req(host="orders.svc.local"))
    assert not matches(match, req(host="svc.local"))
    assert not matches(match, req(host="web"))


@pytest.mark.parametrize(
    ("path", "expected"),
    [("/orders", True), ("/orders/", False), ("/orders/1", False), ("/order", False), ("/Orders", False)],
)
def test_exact_path(path: str, expected: bool) -> None:
    assert matches({"path": "/orders"}, req(path)) is expected


def test_exact_path_ignores_the_query() -> None:
    assert matches({"path": "/orders"}, req("/orders?limit=5"))


@pytest.mark.parametrize(
    ("path", "expected"),
    [("/api", True), ("/api/", True), ("/api/v1/x", True), ("/apix", True), ("/ap", False), ("/", False),
     ("/API", False), ("/v1/api", False)],
)
def test_path_prefix_is_a_plain_string_prefix(path: str, expected: bool) -> None:
    # As Envoy's `prefix`: documented in docs/configuration.md.
    assert matches({"path_prefix": "/api"}, req(path)) is expected


def test_root_prefix_matches_all() -> None:
    assert matches({"path_prefix": "/"}, req("/x/y"))
    assert matches({"path_prefix": "/"}, req("/"))


def test_methods() -> None:
    match = {"methods": ["post", "PUT"]}  # normalised to upper case by the config
    assert matches(match, req(method="POST"))
    assert matches(match, req(method="PUT"))
    assert not matches(match, req(method="GET"))


@pytest.mark.parametrize(
    ("rule", "headers", "expected"),
    [
        ({"name": "x-tenant", "exact": "gold"}, {"x-tenant": "gold"}, True),
        ({"name": "x-tenant", "exact": "gold"}, {"x-tenant": "golden"}, False),
        ({"name": "x-tenant", "exact": "gold"}, {"x-tenant": "Gold"}, False),  # values are case-sensitive
        ({"name": "x-tenant", "exact": "gold"}, {}, False),
        ({"name": "X-Tenant", "exact": "gold"}, {"x-tenant": "gold"}, True),  # names are not
        ({"name": "x-tenant", "prefix": "gol"}, {"x-tenant": "golden"}, True),
        ({"name": "x-tenant", "prefix": "gol"}, {"x-tenant": "silver"}, False),
        ({"name": "x-tenant", "prefix": "gol"}, {}, False),
        ({"name": "x-tenant", "present": True}, {"x-tenant": ""}, True),
        ({"name": "x-tenant", "present": True}, {}, False),
        ({"name": "x-tenant", "present": False}, {}, True),
        ({"name": "x-tenant", "present": False}, {"x-tenant": "a"}, False),
        ({"name": "x-tenant"}, {"x-tenant": "a"}, True),  # no kind: present
        ({"name": "x-tenant"}, {}, False),
        ({"name": "x-tenant", "exact": "gold", "invert": True}, {"x-tenant": "gold"}, False),
        ({"name": "x-tenant", "exact": "gold", "invert": True}, {"x-tenant": "silver"}, True),
        ({"name": "x-tenant", "exact": "gold", "invert": True}, {}, True),
        ({"name": "x-tenant", "prefix": "gol", "invert": True}, {"x-tenant": "gold"}, False),
        ({"name": "x-tenant", "present": True, "invert": True}, {}, True),
        ({"name": "x-tenant", "present": True, "invert": True}, {"x-tenant": "a"}, False),
    ],
)
def test_headers(rule: dict[str, Any], headers: dict[str, str], expected: bool) -> None:
    assert matches({"headers": [rule]}, req(headers=headers)) is expected


def test_all_header_rules_must_match() -> None:
    match = {"headers": [{"name": "a", "exact": "1"}, {"name": "b", "present": True}]}
    assert matches(match, req(headers={"a": "1", "b": "x"}))
    assert not matches(match, req(headers={"a": "1"}))
    assert not matches(match, req(headers={"b": "x"}))


def test_every_condition_must_hold() -> None:
    match = {"host": "*.svc", "path_prefix": "/orders", "methods": ["POST"],
             "headers": [{"name": "x-tenant", "exact": "gold"}]}
    good = req("/orders/1", "a.svc", "POST", {"x-tenant": "gold"})
    assert matches(match, good)
    assert not matches(match, req("/orders/1", "svc", "POST", {"x-tenant": "gold"}))
    assert not matches(match, req("/users", "a.svc", "POST", {"x-tenant": "gold"}))
    assert not matches(match, req("/orders/1", "a.svc", "GET", {"x-tenant": "gold"}))
    assert not matches(match, req("/orders/1", "a.svc", "POST", {"x-tenant": "lead"}))


def table(*specs: tuple[dict[str, Any], str]) -> RouteTable[str]:
    return RouteTable([(RouteMatcher(Match.model_validate(m)), name) for m, name in specs])


def test_first_match_wins() -> None:
    routes = table(
        ({"path": "/orders/special"}, "special"),
        ({"path_prefix": "/orders"}, "orders"),
        ({"path_prefix": "/orders/special"}, "never"),  # shadowed by the one above
        ({}, "fallback"),
    )
    assert routes.match(req("/orders/special")) == "special"
    assert routes.match(req("/orders/special/x")) == "orders"
    assert routes.match(req("/orders")) == "orders"
    assert routes.match(req("/other")) == "fallback"


def test_no_match_is_none() -> None:
    routes = table(({"host": "a"}, "a"), ({"host": "b"}, "b"))
    assert routes.match(req(host="c")) is None
    assert RouteTable([]).match(req()) is None
