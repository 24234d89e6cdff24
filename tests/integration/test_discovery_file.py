"""File discovery through a running proxy: rewriting the file changes the endpoints without a restart;
endpoints that stay keep their connections and counters; a broken file keeps the last good set."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from testbed.config import config, listener, route
from testbed.fleet import Fleet, load, request_bytes
from testbed.proxy import MeshbatchProcess


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    fleet = Fleet().start("a", "b", "c")
    yield fleet
    fleet.close()


def write(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(data), encoding="utf-8")
    os.replace(tmp, path)  # atomic: the proxy never reads half a file


def served(proxy: MeshbatchProcess, n: int = 60) -> Counter[str]:
    results = asyncio.run(load(proxy.address("main"), [request_bytes("GET", "/")] * n, 3))
    assert all(r.status == 200 for r in results), Counter(r.status for r in results)
    return Counter(r.server for r in results)


def cluster_state(proxy: MeshbatchProcess) -> dict[str, Any]:
    state: dict[str, Any] = httpx.get(proxy.url("admin", "/clusters"), timeout=5).json()["clusters"][0]
    return state


def wait_until(check: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not in time"
        time.sleep(0.05)


def test_file_changes_apply_without_restart(mesh: Any, fleet: Fleet, tmp_path: Path) -> None:
    path = tmp_path / "endpoints.yaml"
    a, b, c = (fleet[n].address for n in "abc")
    write(path, [a, {"address": b, "weight": 1, "metadata": {"zone": "z1", "version": "v2"}}])
    spec = {"name": "svc", "discovery": {"type": "file", "path": str(path), "refresh_ms": 100}}
    proxy = mesh.start(config([listener("main", [route("all", "svc")])], [spec]))
    assert set(served(proxy)) == {"a", "b"}
    before = {e["address"]: e for e in cluster_state(proxy)["endpoints"]}
    assert before[b]["metadata"] == {"zone": "z1", "version": "v2"}

    write(path, {"endpoints": [b, c]})
    wait_until(lambda: {e["address"] for e in cluster_state(proxy)["endpoints"]} == {b, c})
    assert set(served(proxy)) == {"b", "c"}
    after = {e["address"]: e for e in cluster_state(proxy)["endpoints"]}
    assert after[b]["requests"] > before[b]["requests"]  # the same endpoint: its counters went on
    # and its pool: its connect count goes on too, and stays within the callers' concurrency (3: connections
    # reused, not one per request; how many of the 3 one endpoint needs at once depends on the balancing)
    assert before[b]["connections"]["connects"] <= after[b]["connections"]["connects"] <= 3

    path.write_text("[not: valid: yaml", encoding="utf-8")
    wait_until(lambda: "not YAML" in cluster_state(proxy)["discovery"]["last_error"])
    assert set(served(proxy)) == {"b", "c"}  # the last good set stays

    write(path, [])
    wait_until(lambda: cluster_state(proxy)["endpoints"] == [])
    answer = httpx.get(proxy.url("main", "/"), headers={"host": "service"}, timeout=5)
    assert answer.status_code == 503 and answer.json()["reason"] == "no_healthy_upstream"
