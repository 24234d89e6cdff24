"""Traffic shaping through a real proxy: weighted splits across clusters (canary), sticky by a header, and
header-based routing to subsets of a cluster's endpoints (by endpoint metadata)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from testbed.config import cluster, config, listener, route
from testbed.fleet import Fleet, load, request_bytes
from testbed.proxy import MeshbatchProcess, metric_value


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    fleet = Fleet().start("a", "b", "c")
    yield fleet
    fleet.close()


@pytest.fixture(scope="module")
def proxy(module_mesh: Any, fleet: Fleet) -> MeshbatchProcess:
    canary = {"name": "canary", "match": {"path_prefix": "/split"},
              "split": [{"cluster": "stable", "weight": 80}, {"cluster": "next", "weight": 20}]}
    sticky = {"name": "sticky", "match": {"path_prefix": "/sticky"}, "split_key": "header:x-user",
              "split": [{"cluster": "stable", "weight": 50}, {"cluster": "next", "weight": 50}]}
    routes = [
        canary, sticky,
        route("v2", "versions", {"path_prefix": "/v", "headers": [{"name": "x-canary", "exact": "1"}]},
              subset={"version": "v2"}),
        route("v1", "versions", {"path_prefix": "/v"}, subset={"version": "v1"}),
    ]
    versions = cluster("versions", {"address": fleet["a"].address, "metadata": {"version": "v1"}},
                       {"address": fleet["b"].address, "metadata": {"version": "v1"}},
                       {"address": fleet["c"].address, "metadata": {"version": "v2"}})
    started: MeshbatchProcess = module_mesh.start(config(
        [listener("main", routes)],
        [cluster("stable", fleet["a"].address), cluster("next", fleet["b"].address), versions]))
    return started


def servers(proxy: MeshbatchProcess, path: str, n: int, headers: dict[str, str] | None = None) -> Counter[str]:
    results = asyncio.run(load(proxy.address("main"), [request_bytes("GET", f"{path}/{i}", headers=headers)
                                                       for i in range(n)], 8))
    assert Counter(r.status for r in results) == {200: n}
    return Counter(r.server for r in results)


def test_weighted_split_sends_the_canary_its_share(proxy: MeshbatchProcess) -> None:
    counts = servers(proxy, "/split", 2000)
    share = counts["b"] / 2000
    print(f"\ncanary share {share:.3f} of 2000 (weight 20%)")
    assert set(counts) == {"a", "b"} and 0.16 <= share <= 0.24
    text = httpx.get(proxy.url("admin", "/metrics"), timeout=5).text
    assert metric_value(text, "meshbatch_split_total", route="canary", cluster="next") == counts["b"]


def test_a_split_key_keeps_each_caller_on_one_side(proxy: MeshbatchProcess) -> None:
    sides = {user: set(servers(proxy, "/sticky", 20, {"x-user": user})) for user in ("ann", "ben", "cy", "di")}
    assert all(len(side) == 1 for side in sides.values()), sides
    spread = Counter(next(iter(side)) for side in (set(servers(proxy, "/sticky", 1, {"x-user": f"u{i}"}))
                                                   for i in range(60)))
    assert spread["a"] >= 15 and spread["b"] >= 15


def test_header_routes_to_a_subset_of_endpoints(proxy: MeshbatchProcess) -> None:
    assert set(servers(proxy, "/v", 60)) == {"a", "b"}
    assert set(servers(proxy, "/v", 30, {"x-canary": "1"})) == {"c"}
