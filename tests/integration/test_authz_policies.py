"""Authorization policies end to end: peers identified by mTLS (certificates from `meshbatch ca`) or plaintext on a
permissive listener, a matrix of identities, methods, paths and headers; DENY wins; no ALLOW match is a 403;
route policies after the listener's; every denial counted by reason and never forwarded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from testbed.config import cluster, config, listener, route
from testbed.pki import Pki, client_context, tls_request
from testbed.proxy import MeshbatchProcess, metric_value
from testbed.raw import get
from testbed.upstream import UpstreamServer

TD = "example.org"
POLICIES = [
    {"name": "no-legacy", "action": "DENY",
     "rules": [{"from": [{"source": {"principals": [f"spiffe://{TD}/ns/legacy/*"]}}]}]},
    {"name": "no-admin", "action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin*"]}}]}]},
    {"name": "shop-orders", "action": "ALLOW", "rules": [{
        "from": [{"source": {"namespaces": ["shop"]}}],
        "to": [{"operation": {"methods": ["GET", "POST"], "paths": ["/orders*"]}}]}]},
    {"name": "public", "action": "ALLOW", "rules": [{"to": [{"operation": {"paths": ["/public*"]}}]}]},
    {"name": "tenant", "action": "ALLOW", "rules": [{
        "to": [{"operation": {"paths": ["/tenant/*"]}}],
        "when": [{"key": "request.headers[x-tenant]", "values": ["acme"]}]}]},
]
ROUTE_POLICY = [{"name": "reports-read-only", "action": "ALLOW",
                 "rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]}]


@pytest.fixture(scope="module")
def setup(module_mesh: Any, upstreams: dict[str, UpstreamServer],
          tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("authz")
    pki = Pki(root)
    for name, path in (("server", "/ns/shop/sa/orders"), ("web", "/ns/shop/sa/web"),
                       ("billing", "/ns/billing/sa/x"), ("legacy", "/ns/legacy/sa/old")):
        pki.issue(name, path)
    routes = [route("reports", "echo", {"path_prefix": "/public/reports"}, policies=ROUTE_POLICY),
              route("all", "echo")]
    proxy = module_mesh.start(config([listener("main", routes, tls={"mode": "permissive"}, policies=POLICIES)],
                                     [cluster("echo", upstreams["c"].address)], identity=pki.identity("server")))
    return {"proxy": proxy, "pki": pki, "root": root}


def _as(setup: dict[str, Any], who: str) -> Any:
    root: Path = setup["root"]
    if who == "plain":
        return None
    return client_context(setup["pki"].ca, root / f"{who}.crt", root / f"{who}.key")


MATRIX = [
    ("web", "GET", "/orders/1", "", 200),
    ("web", "POST", "/orders", "content-length: 0\r\n", 200),
    ("web", "DELETE", "/orders/1", "", 403),  # no ALLOW for that method
    ("billing", "GET", "/orders/1", "", 403),  # wrong namespace
    ("plain", "GET", "/orders/1", "", 403),  # no identity at all
    ("plain", "GET", "/public/page", "", 200),
    ("legacy", "GET", "/public/page", "", 403),  # DENY wins over a matching ALLOW
    ("web", "GET", "/admin/x", "", 403),
    ("web", "GET", "/%61dmin/x", "", 403),  # decoded before matching
    ("web", "GET", "//admin", "", 403),  # merged slashes
    ("web", "GET", "/public/../admin", "", 403),  # normalised to /admin before routing and policies
    ("web", "GET", "/public%2fadmin", "", 400),  # an escaped slash: refused, never evaluated or forwarded
    ("plain", "GET", "/tenant/a", "x-tenant: acme\r\n", 200),
    ("plain", "GET", "/tenant/a", "x-tenant: other\r\n", 403),
    ("plain", "GET", "/public/reports/1", "", 200),  # the route's own policy: GET only
    ("plain", "POST", "/public/reports/1", "content-length: 0\r\n", 403),
]


@pytest.mark.parametrize(("who", "method", "path", "extra", "status"), MATRIX)
def test_policy_matrix(setup: dict[str, Any], upstreams: dict[str, UpstreamServer], who: str, method: str,
                       path: str, extra: str, status: int) -> None:
    upstream = upstreams["c"]
    upstream.reset()
    data = f"{method} {path} HTTP/1.1\r\nHost: test\r\n{extra}\r\n".encode()
    assert tls_request(setup["proxy"].address("main"), _as(setup, who), data) == status
    assert bool(upstream.requests) == (status == 200)


def test_denials_are_counted_by_reason_and_policy(setup: dict[str, Any]) -> None:
    proxy: MeshbatchProcess = setup["proxy"]
    address = proxy.address("main")
    before = httpx.get(proxy.url("admin", "/metrics"), timeout=5).text
    assert tls_request(address, _as(setup, "legacy"), get("/public/x")) == 403
    assert tls_request(address, _as(setup, "billing"), get("/orders")) == 403
    after = httpx.get(proxy.url("admin", "/metrics"), timeout=5).text
    for reason in ("authz_denied", "authz_no_match"):
        delta = metric_value(after, "meshbatch_local_replies_total", status="403", reason=reason) - \
            metric_value(before, "meshbatch_local_replies_total", status="403", reason=reason)
        assert delta == 1, reason
    assert metric_value(after, "meshbatch_authz_decisions_total", policy="no-legacy", result="authz_denied") >= 1
