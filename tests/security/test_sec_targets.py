"""Hostile request targets and authorities against a running proxy: non-HTTP schemes, `*` with other methods
than OPTIONS, Host values that are not host names, absolute-form URLs whose authority disagrees with Host,
CONNECT. Each test checks what the client got and what the upstream received (nothing, for a refused request).

Listener `main` routes host `service` to upstream b and anything else to upstream a.
"""

from __future__ import annotations

from typing import Any

import pytest

from testbed.config import cluster, config, listener, route
from testbed.proxy import MeshbatchProcess
from testbed.raw import RawResponse, exchange
from testbed.upstream import UpstreamServer


@pytest.fixture(scope="module")
def proxy(module_mesh: Any, upstreams: dict[str, UpstreamServer]) -> MeshbatchProcess:
    routes = [route("service", "b", {"host": "service"}), route("all", "a")]
    process: MeshbatchProcess = module_mesh.start(config(
        [listener("main", routes)], [cluster("a", upstreams["a"].address), cluster("b", upstreams["b"].address)]))
    return process


@pytest.fixture(autouse=True)
def fresh(upstreams: dict[str, UpstreamServer]) -> None:
    for server in upstreams.values():
        server.reset()


def send(proxy: MeshbatchProcess, line: str, host: str | None = "svc") -> RawResponse:
    head = line + " HTTP/1.1\r\n" + (f"Host: {host}\r\n" if host is not None else "") + "\r\n"
    return exchange(proxy.address("main"), head.encode("latin-1"))


def nothing_forwarded(upstreams: dict[str, UpstreamServer]) -> bool:
    return all(not server.requests for server in upstreams.values())


def refused(response: RawResponse, reason: str) -> None:
    assert (response.status, response.json()["reason"]) == (400, reason)


@pytest.mark.parametrize("line", ["GET ftp://svc/x", "GET gopher://svc/", "GET ws://svc/x"])
def test_a_non_http_scheme_is_refused(proxy: MeshbatchProcess, upstreams: dict[str, UpstreamServer],
                                      line: str) -> None:
    refused(send(proxy, line), "unsupported_scheme")
    assert nothing_forwarded(upstreams)


def test_asterisk_is_for_options_only(proxy: MeshbatchProcess, upstreams: dict[str, UpstreamServer]) -> None:
    for method in ("GET", "POST", "DELETE"):
        refused(send(proxy, f"{method} *"), "invalid_target")
    assert nothing_forwarded(upstreams)
    assert send(proxy, "OPTIONS *").status == 200
    assert [s.target for s in upstreams["a"].requests] == ["*"]


@pytest.mark.parametrize("host", ["a@b", "user:pw@service", "svc/../admin", "service/x", "svc%2Fadmin", "svc:http",
                                  "svc:99999", "[::1", "svc\\x", "svc?x", "service..", "a b"])
def test_an_invalid_host_is_refused(proxy: MeshbatchProcess, upstreams: dict[str, UpstreamServer],
                                    host: str) -> None:
    refused(send(proxy, "GET /x", host), "invalid_host")
    assert nothing_forwarded(upstreams)


def test_a_trailing_dot_routes_like_the_name(proxy: MeshbatchProcess, upstreams: dict[str, UpstreamServer]) -> None:
    for host in ("service.", "SERVICE.:8080", "service"):
        response = send(proxy, "GET /x", host)
        assert (response.status, response.json()["server"]) == (200, "b")
    # and it is forwarded the way it was routed: without the dot
    assert [s.header("host") for s in upstreams["b"].requests] == ["service", "SERVICE:8080", "service"]


def test_an_absolute_form_authority_must_agree_with_host(proxy: MeshbatchProcess,
                                                         upstreams: dict[str, UpstreamServer]) -> None:
    refused(send(proxy, "GET http://service/x", "other"), "host_mismatch")
    refused(send(proxy, "GET http://service:8080/x", "service"), "host_mismatch")
    assert nothing_forwarded(upstreams)
    response = send(proxy, "GET http://service/x?q=1", "Service:80")
    assert (response.status, response.json()["server"]) == (200, "b")
    seen = upstreams["b"].last()
    assert (seen.target, seen.header_all("host")) == ("/x?q=1", ["service"])


def test_an_absolute_form_authority_is_checked_too(proxy: MeshbatchProcess,
                                                   upstreams: dict[str, UpstreamServer]) -> None:
    refused(send(proxy, "GET http://user@service/x", "service"), "invalid_host")
    refused(send(proxy, "GET http://a@b/x", "b"), "invalid_host")
    assert nothing_forwarded(upstreams)


def test_absolute_form_paths_are_normalised(proxy: MeshbatchProcess, upstreams: dict[str, UpstreamServer]) -> None:
    assert send(proxy, "GET http://service/a/../b", "service").status == 200
    assert upstreams["b"].last().target == "/b"


def test_connect_is_refused(proxy: MeshbatchProcess, upstreams: dict[str, UpstreamServer]) -> None:
    refused(send(proxy, "CONNECT service:443", "service:443"), "upgrade_not_supported")
    refused(send(proxy, "CONNECT /x"), "upgrade_not_supported")
    assert nothing_forwarded(upstreams)
