"""Upstream failures through a running proxy: refused (503), too slow (504), reset mid-answer and malformed
answers (502), limits of the pool and of answers; each a JSON `{"error", "reason"}` counted in /metrics."""

from __future__ import annotations

import concurrent.futures
import time
from typing import Any

import httpx
import pytest

from testbed.config import cluster, config, listener, route
from testbed.proxy import MeshbatchProcess, metric_value
from testbed.upstream import UpstreamServer, refused_port


@pytest.fixture(scope="module")
def proxy(module_mesh: Any, upstreams: dict[str, UpstreamServer]) -> MeshbatchProcess:
    echo = upstreams["c"].address
    routes = [
        route("refused", "dead", {"path_prefix": "/refused"}),
        route("short", "echo", {"path_prefix": "/short"}, timeout_ms=300),
        route("small", "small", {"path_prefix": "/small"}),
        route("narrow", "narrow", {"path_prefix": "/narrow"}),
        route("all", "echo", timeout_ms=5000),
    ]
    clusters = [
        cluster("dead", f"127.0.0.1:{refused_port()}"),
        cluster("echo", echo),
        cluster("small", echo, max_response_bytes=100),
        cluster("narrow", echo, max_connections=1, max_pending=0),
    ]
    return module_mesh.start(config([listener("main", routes)], clusters))


@pytest.fixture(scope="module")
def client(proxy: MeshbatchProcess) -> Any:
    with httpx.Client(base_url=proxy.url("main"), timeout=10) as c:
        yield c


def local(proxy: MeshbatchProcess, status: int, reason: str) -> float:
    text = httpx.get(proxy.url("admin", "/metrics"), timeout=5).text
    return metric_value(text, "meshbatch_local_replies_total", listener="main", status=str(status), reason=reason)


def check(proxy: MeshbatchProcess, client: httpx.Client, path: str, status: int, reason: str) -> httpx.Response:
    before = local(proxy, status, reason)
    response = client.get(path)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["reason"] == reason
    assert isinstance(body["error"], str) and body["error"]
    assert response.headers["content-type"] == "application/json"
    assert local(proxy, status, reason) == before + 1
    return response


def test_connection_refused_is_503(proxy: MeshbatchProcess, client: httpx.Client) -> None:
    response = check(proxy, client, "/refused", 503, "upstream_connect_failed")
    assert response.json()["error"] == "service unavailable"


def test_slow_upstream_is_504_after_the_route_timeout(proxy: MeshbatchProcess, client: httpx.Client) -> None:
    started = time.monotonic()
    response = check(proxy, client, "/short/slow?ms=3000", 504, "upstream_timeout")
    assert response.json()["error"] == "gateway timeout"
    assert 0.25 <= time.monotonic() - started < 2.0


def test_fast_enough_upstream_on_the_short_route(client: httpx.Client) -> None:
    assert client.get("/short/slow?ms=10").status_code == 200


def test_reset_mid_answer_is_502(proxy: MeshbatchProcess, client: httpx.Client) -> None:
    response = check(proxy, client, "/close-mid", 502, "upstream_reset")
    assert response.json()["error"] == "bad gateway"


def test_close_without_answer_is_502(proxy: MeshbatchProcess, client: httpx.Client) -> None:
    check(proxy, client, "/close-now", 502, "upstream_reset")


def test_post_closed_without_answer_is_502(proxy: MeshbatchProcess, client: httpx.Client) -> None:
    response = client.post("/close-now", content=b"{}")
    assert response.status_code == 502 and response.json()["reason"] == "upstream_reset"


def test_malformed_answer_is_502(proxy: MeshbatchProcess, client: httpx.Client) -> None:
    check(proxy, client, "/malformed", 502, "bad_upstream_response")


def test_answer_too_large_is_502(proxy: MeshbatchProcess, client: httpx.Client) -> None:
    check(proxy, client, "/small/echo", 502, "upstream_response_too_large")


def test_pool_overflow_is_503(proxy: MeshbatchProcess) -> None:
    url = proxy.url("main")

    def call(path: str) -> httpx.Response:
        return httpx.get(url + path, timeout=10)

    before = local(proxy, 503, "upstream_pool_overflow")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        slow = pool.submit(call, "/narrow/slow?ms=600")
        deadline = time.monotonic() + 3
        while True:  # wait until the one connection is busy with the slow request
            clusters = httpx.get(proxy.url("admin", "/clusters"), timeout=5).json()["clusters"]
            narrow = next(c for c in clusters if c["name"] == "narrow")
            if narrow["endpoints"][0]["active_requests"] == 1:
                break
            assert time.monotonic() < deadline
            time.sleep(0.01)
        second = call("/narrow/echo")
        assert second.status_code == 503 and second.json()["reason"] == "upstream_pool_overflow"
        assert slow.result().status_code == 200
    assert local(proxy, 503, "upstream_pool_overflow") == before + 1


def test_the_proxy_keeps_serving_after_failures(client: httpx.Client) -> None:
    for _ in range(3):
        assert client.get("/echo").status_code == 200


def test_errors_show_in_clusters(proxy: MeshbatchProcess) -> None:
    clusters = {c["name"]: c for c in httpx.get(proxy.url("admin", "/clusters"), timeout=5).json()["clusters"]}
    assert clusters["dead"]["upstream_errors"].get("upstream_connect_failed", 0) >= 1
    assert clusters["dead"]["endpoints"][0]["connections"]["connect_failures"] >= 1
    assert clusters["echo"]["upstream_errors"].get("upstream_timeout", 0) >= 1
    assert clusters["echo"]["upstream_errors"].get("bad_upstream_response", 0) >= 1


def test_requests_are_counted_by_route_and_status(proxy: MeshbatchProcess, client: httpx.Client) -> None:
    text = httpx.get(proxy.url("admin", "/metrics"), timeout=5).text
    before = metric_value(text, "meshbatch_requests_total", listener="main", route="refused", status="503")
    client.get("/refused")
    text = httpx.get(proxy.url("admin", "/metrics"), timeout=5).text
    assert metric_value(text, "meshbatch_requests_total", listener="main", route="refused", status="503") == before + 1
