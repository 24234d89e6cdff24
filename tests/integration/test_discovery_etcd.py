"""etcd discovery against a real etcd (Debian's etcd-server) that the test starts on loopback ports: keys
under a prefix are the endpoints, watched; changes apply without a restart; an etcd that goes away leaves
the last set in place, and the source catches up when it is back."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from testbed.config import config, listener, route
from testbed.etcd import Etcd, etcd_binary
from testbed.fleet import Fleet, load, request_bytes
from testbed.proxy import MeshbatchProcess

ETCD = etcd_binary()
pytestmark = pytest.mark.skipif(ETCD is None, reason="etcd is not installed (Debian package etcd-server)")
PREFIX = "/meshbatch/clusters/svc/"


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[Etcd]:
    server = Etcd(tmp_path, prefix=PREFIX).start()
    yield server
    server.stop()


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    fleet = Fleet().start("a", "b", "c")
    yield fleet
    fleet.close()


def served(proxy: MeshbatchProcess, n: int = 60) -> Counter[str]:
    results = asyncio.run(load(proxy.address("main"), [request_bytes("GET", "/")] * n, 3))
    return Counter(r.server if r.status == 200 else str(r.status) for r in results)


def cluster_state(proxy: MeshbatchProcess) -> dict[str, Any]:
    state: dict[str, Any] = httpx.get(proxy.url("admin", "/clusters"), timeout=5).json()["clusters"][0]
    return state


def wait_until(check: Any, timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not in time"
        time.sleep(0.05)


def test_keys_under_the_prefix_are_the_endpoints_and_are_watched(mesh: Any, fleet: Fleet, etcd: Etcd) -> None:
    etcd.put("a", fleet["a"].address)
    etcd.put("b", json.dumps({"address": fleet["b"].address, "weight": 3, "metadata": {"zone": "z2"}}))
    etcd.put("junk", "not an address")
    discovery = {"type": "etcd", "urls": [etcd.url], "prefix": PREFIX}
    proxy = mesh.start(config([listener("main", [route("all", "svc")])], [{"name": "svc", "discovery": discovery}]))
    assert set(served(proxy)) == {"a", "b"}
    state = cluster_state(proxy)
    weights = {e["address"]: (e["weight"], e["metadata"]) for e in state["endpoints"]}
    assert weights[fleet["b"].address] == (3, {"zone": "z2"})
    assert PREFIX + "junk" in state["discovery"]["invalid_keys"]

    etcd.put("c", fleet["c"].address)
    etcd.delete("a")
    wait_until(lambda: {e["address"] for e in cluster_state(proxy)["endpoints"]}
               == {fleet["b"].address, fleet["c"].address})
    assert set(served(proxy)) == {"b", "c"}

    etcd.stop()  # etcd goes away: the last set stays
    wait_until(lambda: cluster_state(proxy)["discovery"]["last_error"] != "")
    assert set(served(proxy)) == {"b", "c"}
    etcd.start()  # back (same data): the source re-reads and watches again
    etcd.put("a", fleet["a"].address)
    wait_until(lambda: len(cluster_state(proxy)["endpoints"]) == 3)
    assert set(served(proxy, 90)) == {"a", "b", "c"}
