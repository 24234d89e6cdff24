"""Access logs end to end: one JSON line per answer with its batch, upstream and response flags; sampling; reload."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

from testbed.batch_upstream import BatchUpstream, batch_route, wait_until
from testbed.config import cluster, config, listener
from testbed.upstream import refused_port


@pytest.fixture(scope="module")
def batch_upstream() -> Iterator[BatchUpstream]:
    server = BatchUpstream().start()
    yield server
    server.stop()


def lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def test_access_log_lines_sampling_and_reload(mesh: Any, batch_upstream: BatchUpstream, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    routes = [batch_route("orders", "/orders/", "/b/json-array/ok", max_in_flight=4),
              batch_route("refused", "/refused/", "/b/json-array/status/503"),
              batch_route("dead", "/dead/", "/b/json-array/ok", cluster="dead")]
    cfg = config([listener("main", [*routes])], [cluster("batch", batch_upstream.address),
                                                 cluster("dead", f"127.0.0.1:{refused_port()}")])
    cfg["access_log"] = {"path": str(log), "flush_ms": 50}
    proxy = mesh.start(cfg, "logged.yaml")
    with httpx.Client(base_url=proxy.url("main"), headers={"user-agent": "obs-test"}) as client:
        assert client.post("/orders/1", json={"n": 1}, headers={"x-request-id": "req-ok"}).status_code == 200
        assert client.post("/refused/1", json={"n": 2}, headers={"x-request-id": "req-502"}).status_code == 502
        assert client.post("/dead/1", json={"n": 3}, headers={"x-request-id": "req-dead"}).status_code == 503
        assert client.get("/nowhere", headers={"x-request-id": "req-404"}).status_code == 404
    found = wait_until(lambda: len(got := lines(log)) >= 4 and got, 10, "four access-log lines")
    by_id = {line["request_id"]: line for line in found}
    ok = by_id["req-ok"]
    assert (ok["listener"], ok["route"], ok["method"], ok["path"], ok["status"], ok["response_flags"]) == \
        ("main", "orders", "POST", "/orders/1", 200, "-")
    assert ok["batch_size"] == 1 and ok["flush"] == "wait" and ok["batch_id"] and ok["queue_ms"] >= 0
    assert ok["upstream"] == batch_upstream.address and ok["user_agent"] == "obs-test" and ok["duration_ms"] >= 0
    assert ok["client"] == "127.0.0.1" and ok["bytes_in"] == len(b'{"n":1}')
    refused = by_id["req-502"]
    assert (refused["status"], refused["reason"], refused["response_flags"]) == (502, "upstream_status_503", "UPE")
    dead = by_id["req-dead"]
    assert dead["status"] == 503 and dead["response_flags"] in {"UF", "UH"} and dead["reason"]
    missing = by_id["req-404"]
    assert (missing["status"], missing["response_flags"], missing["route"]) == (404, "NR", None)

    # Reload: sample nothing but errors; the new access log takes over, the old one is flushed and closed.
    cfg["access_log"] = {"path": str(log), "flush_ms": 50, "sample": 0.0, "always_errors": True}
    proxy.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    mark = proxy.mark()
    proxy.send_signal(signal.SIGHUP)
    proxy.wait_for_line("meshbatch: reloaded", 10, mark)
    with httpx.Client(base_url=proxy.url("main")) as client:
        assert client.post("/orders/2", json={"n": 4}, headers={"x-request-id": "req-quiet"}).status_code == 200
        assert client.get("/nowhere", headers={"x-request-id": "req-404-again"}).status_code == 404
    wait_until(lambda: any(line["request_id"] == "req-404-again" for line in lines(log)), 10, "the error after reload")
    assert "req-quiet" not in {line["request_id"] for line in lines(log)}
    metrics = httpx.get(proxy.admin_url + "/metrics").text
    assert "meshbatch_access_log_lines_total" in metrics
