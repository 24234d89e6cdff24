"""The admin listener of a running proxy: /ready, /metrics (Prometheus text), /config_dump, /clusters,
/listeners, and its errors."""

from __future__ import annotations

import platform
import subprocess
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from meshbatch import __version__
from meshbatch.http import server
from testbed.config import cluster, config, listener, route
from testbed.proxy import MeshbatchProcess
from testbed.upstream import UpstreamServer


@pytest.fixture(scope="module")
def proxy(module_mesh: Any, upstreams: dict[str, UpstreamServer]) -> MeshbatchProcess:
    process: MeshbatchProcess = module_mesh.start(config(
        [listener("main", [route("api", "echo", {"path_prefix": "/api"}, timeout_ms=1234)])],
        [cluster("echo", upstreams["a"].address, upstreams["b"].address)],
    ))
    with httpx.Client(base_url=process.url("main"), timeout=5) as client:
        for _ in range(4):
            assert client.get("/api/x").status_code == 200
        assert client.get("/nothing-here").status_code == 404
    return process


@pytest.fixture(scope="module")
def admin(proxy: MeshbatchProcess) -> Any:
    with httpx.Client(base_url=proxy.url("admin"), timeout=5) as client:
        yield client


def test_ready(admin: httpx.Client) -> None:
    response = admin.get("/ready")
    assert response.status_code == 200
    assert response.text.strip() == "LIVE"


def test_ready_with_curl(proxy: MeshbatchProcess) -> None:
    out = subprocess.run(["curl", "-sS", "-f", "--max-time", "5", proxy.url("admin", "/ready")],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode == 0 and out.stdout.strip() == "LIVE"


def families(admin: httpx.Client, path: str = "/metrics") -> dict[str, Any]:
    response = admin.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {family.name: family for family in text_string_to_metric_families(response.text)}


def samples(family: Any, name: str, **labels: str) -> list[Any]:
    return [s for s in family.samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]


def test_metrics_parse_as_prometheus_text(admin: httpx.Client) -> None:
    found = families(admin)
    for name in ("meshbatch_requests", "meshbatch_request_duration_seconds", "meshbatch_local_replies",
                 "meshbatch_upstream_connections", "meshbatch_downstream_connections", "meshbatch_config_reloads"):
        assert name in found, sorted(found)
    assert found["meshbatch_requests"].type == "counter"
    assert found["meshbatch_request_duration_seconds"].type == "histogram"
    assert found["meshbatch_upstream_connections"].type == "gauge"
    assert found["meshbatch_config_reloads"].type == "counter"
    assert {s.labels["result"] for s in samples(found["meshbatch_config_reloads"],
                                                 "meshbatch_config_reloads_total")} == {"ok", "rejected"}


def test_build_info_names_the_running_build(admin: httpx.Client) -> None:
    (sample,) = samples(families(admin)["meshbatch_build_info"], "meshbatch_build_info")
    assert sample.value == 1
    assert sample.labels["version"] == __version__ and sample.labels["python"] == platform.python_version()
    # the proxy process runs the same build as this test process
    assert sample.labels["compiled"] == ("true" if server.__file__.endswith(".so") else "false")


def test_requests_by_route_and_status(admin: httpx.Client) -> None:
    found = families(admin)
    ok = samples(found["meshbatch_requests"], "meshbatch_requests_total", listener="main", route="api", status="200")
    assert ok and ok[0].value == 4
    missing = samples(found["meshbatch_requests"], "meshbatch_requests_total", listener="main", status="404")
    assert missing and missing[0].value == 1


def test_latency_histogram(admin: httpx.Client) -> None:
    hist = families(admin)["meshbatch_request_duration_seconds"]
    count = samples(hist, "meshbatch_request_duration_seconds_count", listener="main", route="api")
    assert count and count[0].value == 4
    inf = samples(hist, "meshbatch_request_duration_seconds_bucket", listener="main", route="api", le="+Inf")
    assert inf and inf[0].value == 4
    total = samples(hist, "meshbatch_request_duration_seconds_sum", listener="main", route="api")
    assert total and 0 < total[0].value < 5


def test_local_replies_by_reason(admin: httpx.Client) -> None:
    local = families(admin)["meshbatch_local_replies"]
    no_route = samples(local, "meshbatch_local_replies_total", listener="main", status="404", reason="no_route")
    assert no_route and no_route[0].value == 1


def test_upstream_connections_gauge(admin: httpx.Client) -> None:
    gauge = families(admin)["meshbatch_upstream_connections"]
    idle = samples(gauge, "meshbatch_upstream_connections", cluster="echo", state="idle")
    assert len(idle) == 2  # one series per endpoint
    assert sum(s.value for s in idle) == 2  # round robin kept one warm connection to each


def test_prometheus_path_alias(admin: httpx.Client) -> None:
    assert "meshbatch_requests" in families(admin, "/stats/prometheus")


def test_config_dump(admin: httpx.Client) -> None:
    dump = admin.get("/config_dump").json()
    assert dump["version"] == 1
    assert isinstance(dump["loaded_at"], float)
    cfg = dump["config"]
    assert cfg["listeners"][0]["name"] == "main"
    assert cfg["listeners"][0]["routes"][0]["timeout_ms"] == 1234
    assert cfg["listeners"][0]["routes"][0]["match"]["path_prefix"] == "/api"
    assert cfg["clusters"][0]["name"] == "echo"
    assert cfg["listeners"][0]["limits"]["max_body_bytes"] == 8_388_608  # defaults are shown too


def test_clusters(admin: httpx.Client, upstreams: dict[str, UpstreamServer]) -> None:
    (echo,) = admin.get("/clusters").json()["clusters"]
    assert echo["name"] == "echo" and echo["lb"] == "round_robin"
    addresses = [e["address"] for e in echo["endpoints"]]
    assert addresses == [upstreams["a"].address, upstreams["b"].address]
    for endpoint in echo["endpoints"]:
        assert endpoint["health"] == "healthy"
        assert endpoint["requests"] == 2
        assert endpoint["active_requests"] == 0
        assert endpoint["connections"]["open"] == 1


def test_listeners(admin: httpx.Client, proxy: MeshbatchProcess) -> None:
    listeners = admin.get("/listeners").json()["listeners"]
    (main,) = [item for item in listeners if item["name"] == "main"]
    assert main["address"] == proxy.addresses["main"]
    assert main["accepted"] >= 1


def test_batchers_empty_without_batching_routes(admin: httpx.Client) -> None:
    assert admin.get("/batchers").json() == {"batchers": {}}


def test_index_lists_endpoints(admin: httpx.Client) -> None:
    endpoints = admin.get("/").json()["endpoints"]
    assert {"/ready", "/metrics", "/config_dump", "/clusters", "/listeners"} <= set(endpoints)


def test_unknown_admin_path_is_404_json(admin: httpx.Client) -> None:
    response = admin.get("/nope")
    assert response.status_code == 404
    assert response.json()["reason"] == "no_admin_endpoint"


def test_admin_is_read_only(admin: httpx.Client) -> None:
    response = admin.post("/ready", content=b"")
    assert response.status_code == 405
    assert response.json()["reason"] == "method_not_allowed"


def test_head_on_admin(admin: httpx.Client) -> None:
    response = admin.head("/ready")
    assert response.status_code == 200 and response.content == b""
