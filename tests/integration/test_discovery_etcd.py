"""etcd discovery against a real etcd (Debian's etcd-server) that the test starts on loopback ports: keys
under a prefix are the endpoints, watched; changes apply without a restart; an etcd that goes away leaves
the last set in place, and the source catches up when it is back."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from testbed.config import config, listener, route
from testbed.fleet import Fleet, free_port, load, request_bytes
from testbed.proxy import MeshbatchProcess

ETCD = shutil.which("etcd") or ("/usr/bin/etcd" if Path("/usr/bin/etcd").exists() else None)
pytestmark = pytest.mark.skipif(ETCD is None, reason="etcd is not installed (Debian package etcd-server)")
PREFIX = "/meshbatch/clusters/svc/"


class Etcd:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.client = free_port()
        self.peer = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.client}"

    def start(self) -> Etcd:
        assert ETCD is not None
        self.proc = subprocess.Popen(
            [ETCD, "--name", "test", "--data-dir", str(self.folder / "data"),
             "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
             "--listen-peer-urls", f"http://127.0.0.1:{self.peer}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.peer}",
             "--initial-cluster", f"test=http://127.0.0.1:{self.peer}", "--log-level", "error"],
            stdout=subprocess.DEVNULL, stderr=(self.folder / "etcd.log").open("ab"), stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while True:
            try:
                self.call("/v3/kv/range", {"key": _b64("x")})
                return self
            except OSError:
                assert time.monotonic() < deadline, (self.folder / "etcd.log").read_text()
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def call(self, path: str, payload: dict[str, Any]) -> Any:
        request = urllib.request.Request(self.url + path, data=json.dumps(payload).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=3) as answer:
            return json.loads(answer.read())

    def put(self, key: str, value: str) -> None:
        self.call("/v3/kv/put", {"key": _b64(PREFIX + key), "value": _b64(value)})

    def delete(self, key: str) -> None:
        self.call("/v3/kv/deleterange", {"key": _b64(PREFIX + key)})


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[Etcd]:
    server = Etcd(tmp_path).start()
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
