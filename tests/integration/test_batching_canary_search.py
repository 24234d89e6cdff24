"""`batch.adaptive: {canary: SHARE}` with no candidate, through `meshbatch run`: once the route's recorder holds
enough traffic the proxy sweeps it in a process of its own and starts a canary of the recommended setting by
itself; a route whose record is still short says so in /batchers."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from testbed.batch_upstream import BatchUpstream, batch_route, serving
from testbed.config import cluster, config, listener
from testbed.proxy import MeshbatchProcess, metric_value

RULES = {"canary": 0.25, "window_ms": 250, "min_batches": 5, "max_windows": 40}


upstream = pytest.fixture(scope="module", name="upstream")(serving)


@pytest.fixture(scope="module")
def proxy(module_mesh: Any, upstream: BatchUpstream) -> MeshbatchProcess:
    routes = [
        # 3 ms a batch whatever its size: batches bigger than 4 cost the upstream less per item
        batch_route("found", "/found/", "/b/json-array/ok?ms=3", max_items=4,
                    adaptive={**RULES, "sweep": {"min_arrivals": 300, "min_batches": 20}}),
        batch_route("short", "/short/", "/b/json-array/ok?ms=3", max_items=4,
                    adaptive={**RULES, "sweep": {"min_arrivals": 60_000}}),
    ]
    process: MeshbatchProcess = module_mesh.start(config([listener("main", routes)],
                                                         [cluster("batch", upstream.address)]))
    return process


def test_the_proxy_sweeps_the_recorded_traffic_and_starts_a_canary_by_itself(proxy: MeshbatchProcess) -> None:
    done = threading.Event()

    def caller(n: int) -> list[int]:
        statuses = []
        with httpx.Client(base_url=proxy.url("main"), timeout=10) as client:
            while not done.is_set():
                statuses.append(client.post(f"/{'found' if n % 4 else 'short'}/x", json={"c": n}).status_code)
        return statuses

    with httpx.Client(base_url=proxy.admin_url, timeout=5) as admin, ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(caller, n) for n in range(16)]
        deadline = time.monotonic() + 20
        canary: dict[str, Any] = {}
        while time.monotonic() < deadline:
            canary = admin.get("/batchers").json()["batchers"]["found"]["canary"]
            if canary["candidate"] is not None:
                break
            time.sleep(0.05)
        done.set()
        statuses = [s for f in futures for s in f.result()]
        views = admin.get("/batchers").json()["batchers"]
    assert set(statuses) == {200}
    assert canary["candidate"] is not None, canary
    assert canary["current"]["max_items"] == 4 and canary["candidate"]["max_items"] > 4
    search = canary["search"]
    assert search["sweeps"] == 1 and search["failed_sweeps"] == 0 and search["state"] == "trying"
    assert "replayed p99" in search["last"]
    short = views["short"]["canary"]
    assert short["candidate"] is None and short["search"]["state"] == "waiting_for_data"
    assert short["search"]["needs"]["arrivals"] == 60_000 and short["search"]["recorded"]["arrivals"] > 0
    text = httpx.get(proxy.admin_url + "/metrics").text
    assert metric_value(text, "meshbatch_batch_canary_sweeps_total", route="found", result="candidate") == 1
    proxy.wait_for_line("canary sweep on route found recommends", timeout=2)
