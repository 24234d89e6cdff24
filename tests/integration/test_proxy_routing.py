"""Routing through a running `meshbatch run`: host (exact, `*.suffix`), path, methods, headers, 404, via
httpx and curl. Three upstreams (a, b, c) tell which route served by the name they echo."""

from __future__ import annotations

import itertools
import json
import subprocess
from typing import Any

import httpx
import pytest

from testbed.config import cluster, config, listener, route
from testbed.proxy import MeshbatchProcess
from testbed.raw import exchange
from testbed.upstream import UpstreamServer

ROUTES = [
    route("round-robin", "ab", {"path_prefix": "/rr"}),
    route("exact-host", "a", {"host": "exact.test"}),
    route("wildcard", "b", {"host": "*.wild.test"}),
    route("path-exact", "c", {"path": "/exact"}),
    route("methods", "a", {"path_prefix": "/methods", "methods": ["POST", "PUT"]}),
    route("header-exact", "b", {"path_prefix": "/hdr", "headers": [{"name": "x-tenant", "exact": "gold"}]}),
    route("header-prefix", "c", {"path_prefix": "/hdr", "headers": [{"name": "x-tenant", "prefix": "sil"}]}),
    route("header-absent", "a", {"path_prefix": "/hdr",
                                 "headers": [{"name": "x-tenant", "present": True, "invert": True}]}),
    route("api", "b", {"path_prefix": "/api"}),
    route("api-shadowed", "c", {"path_prefix": "/api/v2"}),  # never reached: /api comes first
]


@pytest.fixture(scope="module")
def proxy(module_mesh: Any, upstreams: dict[str, UpstreamServer]) -> MeshbatchProcess:
    clusters = [cluster(name, server.address) for name, server in upstreams.items()]
    clusters.append(cluster("ab", upstreams["a"].address, upstreams["b"].address))
    return module_mesh.start(config([listener("routing", ROUTES)], clusters))


@pytest.fixture(scope="module")
def client(proxy: MeshbatchProcess) -> Any:
    with httpx.Client(base_url=proxy.url("routing"), timeout=5) as c:
        yield c


def served_by(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    name: str = response.json()["server"]
    return name


@pytest.mark.parametrize(
    ("host", "expected"),
    [("exact.test", "a"), ("EXACT.test", "a"), ("exact.test:8080", "a"), ("x.wild.test", "b"),
     ("a.b.wild.test", "b")],
)
def test_host_routing(client: httpx.Client, host: str, expected: str) -> None:
    assert served_by(client.get("/anything", headers={"host": host})) == expected


def test_suffix_does_not_match_the_bare_domain(client: httpx.Client) -> None:
    response = client.get("/anything", headers={"host": "wild.test"})
    assert response.status_code == 404


def test_exact_path(client: httpx.Client) -> None:
    assert served_by(client.get("/exact", headers={"host": "other"})) == "c"
    assert served_by(client.get("/exact?with=query", headers={"host": "other"})) == "c"
    assert client.get("/exact/more", headers={"host": "other"}).status_code == 404


def test_methods(client: httpx.Client) -> None:
    assert served_by(client.post("/methods/x", headers={"host": "other"}, content=b"{}")) == "a"
    assert served_by(client.put("/methods/x", headers={"host": "other"}, content=b"{}")) == "a"
    assert client.get("/methods/x", headers={"host": "other"}).status_code == 404


@pytest.mark.parametrize(
    ("headers", "expected"),
    [({"x-tenant": "gold"}, "b"), ({"x-tenant": "silver"}, "c"), ({}, "a")],
)
def test_headers(client: httpx.Client, headers: dict[str, str], expected: str) -> None:
    assert served_by(client.get("/hdr", headers={"host": "other", **headers})) == expected


def test_header_match_that_fails_every_rule_is_404(client: httpx.Client) -> None:
    assert client.get("/hdr", headers={"host": "other", "x-tenant": "bronze"}).status_code == 404


def test_first_match_wins(client: httpx.Client) -> None:
    assert served_by(client.get("/api/v2/items", headers={"host": "other"})) == "b"
    # The host route comes before everything else, whatever the path.
    assert served_by(client.get("/api/v2/items", headers={"host": "exact.test"})) == "a"


def test_no_route_is_404_with_json(client: httpx.Client) -> None:
    response = client.get("/nowhere", headers={"host": "other"})
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["error"] == "not found" and body["reason"] == "no_route"
    assert set(body) <= {"error", "reason", "detail"}
    assert response.headers["x-request-id"]


def test_the_upstream_sees_the_original_request(client: httpx.Client, upstreams: dict[str, UpstreamServer]) -> None:
    response = client.post("/methods/x?q=1&r=%20", headers={"host": "other", "x-custom": "v"}, content=b"payload")
    echo = response.json()
    assert echo["method"] == "POST"
    assert echo["target"] == "/methods/x?q=1&r=%20"
    assert echo["body"] == "payload"
    headers = dict(echo["headers"])
    assert headers["host"] == "other"
    assert headers["x-custom"] == "v"
    assert headers["content-length"] == "7"


def test_round_robin_over_two_endpoints(client: httpx.Client) -> None:
    # Warm connections and cold ones alike: every request goes to the next endpoint.
    served = [served_by(client.get(f"/rr/{i}", headers={"host": "other"})) for i in range(10)]
    assert served.count("a") == 5 and served.count("b") == 5
    assert all(x != y for x, y in itertools.pairwise(served))


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-sS", "--max-time", "5", *args], capture_output=True, text=True, timeout=10)


def test_curl_routes_by_host(proxy: MeshbatchProcess) -> None:
    out = curl("-H", "Host: x.wild.test", proxy.url("routing", "/curl"))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["server"] == "b"


def test_curl_through_the_proxy_as_a_forward_proxy(proxy: MeshbatchProcess) -> None:
    # `curl -x` (or HTTP_PROXY) sends absolute-form targets: routed by their host and path.
    out = curl("-x", proxy.url("routing"), "http://x.wild.test/as-proxy?q=1")
    assert out.returncode == 0, out.stderr
    echo = json.loads(out.stdout)
    assert echo["server"] == "b"
    assert echo["target"] == "/as-proxy?q=1"
    assert dict(echo["headers"])["host"] == "x.wild.test"
    out = curl("-x", proxy.url("routing"), "http://other/exact")
    assert json.loads(out.stdout)["server"] == "c"


def test_absolute_form_authority_routes(proxy: MeshbatchProcess) -> None:
    response = exchange(proxy.address("routing"), b"GET http://exact.test/api/x HTTP/1.0\r\n\r\n")
    echo = response.json()
    assert echo["server"] == "a"  # the exact.test route
    assert [v for k, v in echo["headers"] if k == "host"] == ["exact.test"]


def test_absolute_form_authority_and_host_must_agree(proxy: MeshbatchProcess) -> None:
    # Routing by one name while a component downstream reads the other is how a request reaches the wrong place.
    response = exchange(proxy.address("routing"),
                        b"GET http://exact.test/api/x HTTP/1.1\r\nHost: a.wild.test\r\n\r\n")
    assert (response.status, response.json()["reason"]) == (400, "host_mismatch")


def test_curl_sees_404_json(proxy: MeshbatchProcess) -> None:
    out = curl("-w", "\n%{http_code}", "-H", "Host: nobody", proxy.url("routing", "/none"))
    body, _, code = out.stdout.rpartition("\n")
    assert code == "404"
    assert json.loads(body)["reason"] == "no_route"


def test_a_local_reply_keeps_the_connection_for_the_next_request(proxy: MeshbatchProcess) -> None:
    """A request the proxy answers itself at once (no route: 404) leaves the keep-alive connection serving: the
    next request on it, and one pipelined behind it, are answered too."""
    from testbed.raw import RawClient, get

    with RawClient(proxy.address("routing")) as raw:
        raw.send(get("/nowhere", host="other"))
        assert raw.read_response().status == 404
        raw.send(get("/rr/1", host="other") + get("/nowhere", host="other") + get("/rr/2", host="other"))
        assert [raw.read_response().status for _ in range(3)] == [200, 404, 200]


@pytest.mark.parametrize(("value", "status"), [("soon", 400), ("nan", 400), ("-5", 504), ("60000", 200)])
def test_the_callers_deadline_on_a_plain_route(client: httpx.Client, value: str, status: int) -> None:
    """`x-meshbatch-deadline-ms` on a plain route: a bad value is the caller's error (400 bad_deadline), a spent
    budget is answered 504 before anything is sent, and the connection keeps serving after either."""
    response = client.get("/rr/deadline", headers={"x-meshbatch-deadline-ms": value})
    assert response.status_code == status, response.text
    if status == 400:
        assert response.json()["reason"] == "bad_deadline"
    assert client.get("/rr/after").status_code == 200
