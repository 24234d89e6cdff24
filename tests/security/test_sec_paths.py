"""Hostile paths against a running proxy: routing, authorization policies and the upstream must see one and the
same path. Each test checks what the client got and what the upstream received (nothing, for a refused request).

Listener `main` (default normalisation) routes `/internal*` to upstream b and everything else to upstream a,
behind a DENY policy on `/admin`, `/admin/*` and `/private%20docs*`. Listeners `keep` and `unescape` show the
options of `path_normalization`.
"""

from __future__ import annotations

from typing import Any

import pytest

from testbed.config import cluster, config, listener, route
from testbed.proxy import MeshbatchProcess
from testbed.raw import RawResponse, exchange
from testbed.upstream import UpstreamServer

DENY = [{"name": "no-admin", "action": "DENY",
         "rules": [{"to": [{"operation": {"paths": ["/admin", "/admin/*", "/private%20docs*"]}}]}]}]


@pytest.fixture(scope="module")
def proxy(module_mesh: Any, upstreams: dict[str, UpstreamServer]) -> MeshbatchProcess:
    routes = [route("internal", "b", {"path_prefix": "/internal"}), route("all", "a")]
    process: MeshbatchProcess = module_mesh.start(config(
        [listener("main", routes, policies=DENY),
         listener("keep", [route("keep-all", "a")], path_normalization={
             "escaped_slashes": "keep", "path_parameters": "keep", "merge_slashes": False}),
         listener("unescape", [route("unescape-all", "a")], policies=DENY,
                  path_normalization={"escaped_slashes": "unescape"})],
        [cluster("a", upstreams["a"].address), cluster("b", upstreams["b"].address)]))
    return process


@pytest.fixture(autouse=True)
def fresh(upstreams: dict[str, UpstreamServer]) -> None:
    for server in upstreams.values():
        server.reset()


def send(proxy: MeshbatchProcess, target: str, listener_name: str = "main") -> RawResponse:
    return exchange(proxy.address(listener_name), f"GET {target} HTTP/1.1\r\nHost: svc\r\n\r\n".encode())


def received(upstreams: dict[str, UpstreamServer]) -> list[str]:
    return [seen.target for name in ("a", "b") for seen in upstreams[name].requests]


def refused(response: RawResponse, status: int, reason: str) -> None:
    assert response.status == status
    body = response.json()
    assert (body["reason"], set(body) >= {"error", "reason"}) == (reason, True)


def test_a_fragment_is_refused(proxy: MeshbatchProcess, upstreams: dict[str, UpstreamServer]) -> None:
    # `/admin#x` once passed a DENY on `/admin` (the fragment was matched as part of the path) and was forwarded.
    for target in ("/admin#x", "/public#frag", "/public?q=1#frag"):
        refused(send(proxy, target), 400, "fragment_in_target")
    assert received(upstreams) == []


@pytest.mark.parametrize(("target", "forwarded"), [
    ("/public/../internal/x", "/internal/x"),
    ("/public/%2e%2e/internal/./x", "/internal/x"),
    ("/../../internal/x", "/internal/x"),  # never above the root
    ("//internal//x", "/internal/x"),
    ("/%69nternal/x", "/internal/x"),  # unreserved escapes decoded
])
def test_the_normalised_path_is_routed_and_forwarded(proxy: MeshbatchProcess, upstreams: dict[str, UpstreamServer],
                                                      target: str, forwarded: str) -> None:
    response = send(proxy, target)
    assert response.status == 200
    assert response.json()["server"] == "b"  # the /internal route matched the normalised path
    assert [s.target for s in upstreams["b"].requests] == [forwarded] and upstreams["a"].requests == []


@pytest.mark.parametrize("target", ["/public/../admin", "/x/%2E%2E/admin/panel", "//admin", "/%61dmin", "/admin/",
                                    "/./admin"])
def test_policies_match_the_normalised_path(proxy: MeshbatchProcess, upstreams: dict[str, UpstreamServer],
                                            target: str) -> None:
    refused(send(proxy, target), 403, "authz_denied")
    assert received(upstreams) == []


@pytest.mark.parametrize("target", ["/admin%2Fx", "/public%2F..%2Fadmin", "/public%2f..%2fadmin", "/admin%5Cx"])
def test_an_escaped_slash_is_refused_by_default(proxy: MeshbatchProcess, upstreams: dict[str, UpstreamServer],
                                                target: str) -> None:
    refused(send(proxy, target), 400, "escaped_slash_in_path")
    assert received(upstreams) == []


def test_an_escaped_slash_kept_is_one_character_of_a_segment(proxy: MeshbatchProcess,
                                                              upstreams: dict[str, UpstreamServer]) -> None:
    assert send(proxy, "/files/a%2fb/../c", "keep").status == 200
    assert received(upstreams) == ["/files/c"]  # `a%2Fb` was one segment, which `..` removed


def test_an_escaped_slash_unescaped_is_a_slash(proxy: MeshbatchProcess, upstreams: dict[str, UpstreamServer]) -> None:
    refused(send(proxy, "/public%2F..%2Fadmin", "unescape"), 403, "authz_denied")  # it is /admin
    assert send(proxy, "/public%2Fdocs", "unescape").status == 200
    assert received(upstreams) == ["/public/docs"]


@pytest.mark.parametrize("target", ["/admin;x", "/admin;jsessionid=1", "/public/x;a=b/y"])
def test_path_parameters_are_refused_by_default(proxy: MeshbatchProcess, upstreams: dict[str, UpstreamServer],
                                                target: str) -> None:
    # Tomcat and Spring cut `/admin;x` to `/admin`: a policy on /admin would not see the request they serve.
    refused(send(proxy, target), 400, "path_parameters")
    assert received(upstreams) == []


def test_path_parameters_kept_on_request(proxy: MeshbatchProcess, upstreams: dict[str, UpstreamServer]) -> None:
    assert send(proxy, "/a;v=1//b", "keep").status == 200
    assert received(upstreams) == ["/a;v=1//b"]  # (merge_slashes off on this listener)


def test_letter_case_is_significant(proxy: MeshbatchProcess, upstreams: dict[str, UpstreamServer]) -> None:
    # Paths are case-sensitive (RFC 3986 6.2.2.1): `/ADMIN` is not `/admin` to policies, and the upstream gets
    # exactly `/ADMIN`. Guarding a case-insensitive upstream takes an ALLOW list (docs/data-plane.md).
    assert send(proxy, "/ADMIN").status == 200
    assert received(upstreams) == ["/ADMIN"]


def test_a_trailing_dot_in_a_segment_is_kept(proxy: MeshbatchProcess, upstreams: dict[str, UpstreamServer]) -> None:
    # `/v1.` is its own resource (a dot segment is `.` or `..` only); it reaches the upstream as sent.
    assert send(proxy, "/wiki/Washington,_D.C.").status == 200
    assert send(proxy, "/v1./x").status == 200
    assert received(upstreams) == ["/wiki/Washington,_D.C.", "/v1./x"]


def test_percent_20_stays_encoded(proxy: MeshbatchProcess, upstreams: dict[str, UpstreamServer]) -> None:
    assert send(proxy, "/files/a%20b%2c").status == 200
    assert received(upstreams) == ["/files/a%20b%2C"]  # hex upper-cased, never decoded
    # Policies match the still-encoded form: `/private%20docs*`, however the path was spelled.
    refused(send(proxy, "/%70rivate%20docs/x"), 403, "authz_denied")
    refused(send(proxy, "/private%20docs/../private%20docs/y"), 403, "authz_denied")
    assert received(upstreams) == ["/files/a%20b%2C"]


@pytest.mark.parametrize(("target", "reason"), [
    ("/a\\..\\admin", "invalid_path"), ("/a%00", "invalid_path"), ("/a%0d%0aX-Injected:%201", "invalid_path"),
    ("/bad%zz", "invalid_path"), ("/%ff", "invalid_path"), ("/%c0%ae%c0%ae/admin", "invalid_path"),
])
def test_what_cannot_be_made_unambiguous_is_refused(proxy: MeshbatchProcess, upstreams: dict[str, UpstreamServer],
                                                    target: str, reason: str) -> None:
    refused(send(proxy, target), 400, reason)
    assert received(upstreams) == []


def test_the_query_is_left_as_it_is(proxy: MeshbatchProcess, upstreams: dict[str, UpstreamServer]) -> None:
    assert send(proxy, "/p/./q?a=%2e%2E/..//&b=%61;c").status == 200
    assert received(upstreams) == ["/p/q?a=%2e%2E/..//&b=%61;c"]
