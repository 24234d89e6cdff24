"""`max_in_flight: auto` through `meshbatch run`: with a batch upstream that answers fast, the route starts at
one batch in flight, measures, and opens more slots within its bounds; /batchers and /metrics show the limit."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from testbed.batch_upstream import BatchUpstream, batch_route, serving
from testbed.config import cluster, config, listener
from testbed.proxy import MeshbatchProcess, metric_value

AUTO = {"auto": {"min": 1, "max": 6, "min_rtt_batches": 5, "sample_window_ms": 20}}


upstream = pytest.fixture(scope="module", name="upstream")(serving)


@pytest.fixture(scope="module")
def proxy(module_mesh: Any, upstream: BatchUpstream) -> MeshbatchProcess:
    routes = [batch_route("auto", "/auto/", "/b/json-array/ok?ms=5", max_in_flight=AUTO)]
    process: MeshbatchProcess = module_mesh.start(config([listener("main", routes)],
                                                         [cluster("batch", upstream.address)]))
    return process


def test_the_slots_open_up_for_a_fast_upstream_within_their_bounds(proxy: MeshbatchProcess) -> None:
    admin = httpx.Client(base_url=proxy.admin_url, timeout=5)
    before = admin.get("/batchers").json()["batchers"]["auto"]
    assert before["max_in_flight"] == 1
    assert before["in_flight_auto"]["state"] == "measuring" and before["in_flight_auto"]["max"] == 6

    def caller(n: int) -> list[int]:
        with httpx.Client(base_url=proxy.url("main"), timeout=10) as client:
            return [client.post("/auto/x", json={"c": n, "i": i}).status_code for i in range(40)]

    with ThreadPoolExecutor(12) as pool:
        statuses = [s for batch in pool.map(caller, range(12)) for s in batch]
    assert statuses == [200] * len(statuses)
    after = admin.get("/batchers").json()["batchers"]["auto"]
    auto = after["in_flight_auto"]
    assert auto["state"] == "adjusting" and auto["samples"] >= 5 and auto["min_rtt_ms"] > 0
    assert 1 < after["max_in_flight"] <= 6 and auto["limit"] == after["max_in_flight"]
    text = admin.get("/metrics").text
    assert metric_value(text, "meshbatch_batch_in_flight_limit", route="auto") == after["max_in_flight"]
