"""The operator's view of a running proxy: the dashboard feed and page, the batch recorder, `meshbatch top` and
`meshbatch tune`, each against `meshbatch run` carrying real batched traffic."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from testbed.batch_upstream import BatchUpstream, batch_route, wait_until
from testbed.config import cluster, config, listener, route
from testbed.proxy import MeshbatchProcess
from testbed.upstream import UpstreamServer

REQUESTS = 400
EVENTS = 20


@pytest.fixture(scope="module")
def batch_upstream() -> Iterator[BatchUpstream]:
    server = BatchUpstream().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def busy(module_mesh: Any, batch_upstream: BatchUpstream, upstreams: dict[str, UpstreamServer],
         tmp_path_factory: pytest.TempPathFactory) -> MeshbatchProcess:
    """A proxy after a burst of concurrent callers on a batching route (upstream 2 ms per batch), a plain one, and
    events delivered by an ingest route to SQLite."""
    store = tmp_path_factory.mktemp("ingest")
    # a long route timeout: the figures are what is checked here, not how fast a loaded machine serves them
    routes = [batch_route("orders", "/orders/", "/b/json-array/ok?ms=2", timeout_ms=30_000, max_in_flight=2),
              route("plain", "echo", {"path_prefix": "/plain/"}),
              {"name": "events", "match": {"path_prefix": "/events/"}, "timeout_ms": 5000,
               "ingest": {"ack": "delivered", "log": {"path": str(store / "log.db")},
                          "sink": {"type": "sqlite", "path": str(store / "events.db")}}}]
    proxy: MeshbatchProcess = module_mesh.start(config([listener("main", routes)], [
        cluster("batch", batch_upstream.address), cluster("echo", upstreams["b"].address)]))
    with httpx.Client(base_url=proxy.url("main"), limits=httpx.Limits(max_connections=32)) as client, \
            ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(lambda i: client.post(f"/orders/{i}", json={"i": i}).status_code, range(REQUESTS)))
        statuses += [client.get("/plain/x").status_code for _ in range(5)]
        accepted = [client.post(f"/events/{i}", json={"i": i}).status_code for i in range(EVENTS)]
    assert statuses == [200] * (REQUESTS + 5) and accepted == [202] * EVENTS
    return proxy


def feed(proxy: MeshbatchProcess, since: int = 0) -> dict[str, Any]:
    document: dict[str, Any] = httpx.get(proxy.admin_url + f"/dashboard/feed?since={since}").json()
    return document


def test_the_feed_has_live_figures_and_history(busy: MeshbatchProcess) -> None:
    document = wait_until(lambda: (d := feed(busy)) and d["history"] and d, 5, "a history point")
    routes = {r["name"]: r for r in document["routes"]}
    orders = routes["orders"]
    assert orders["kind"] == "batch" and orders["batcher"]["items_total"] == REQUESTS
    assert sum(orders["sizes"]["total"]) == sum(orders["batcher"]["flushes"].values())
    assert sum(orders["sizes"]["counts"]) > 0 and orders["statuses"] == {"200": REQUESTS}
    assert routes["plain"]["kind"] == "plain" and routes["plain"]["statuses"] == {"200": 5}
    assert 0 < orders["upstream_calls_total"] < REQUESTS  # batching saved upstream calls
    events = routes["events"]["ingest"]
    assert events["accepted_total"] == events["delivered_total"] == EVENTS and events["backlog"] == 0
    assert events["sink"] == {"type": "sqlite", "state": "up", "error": "", "failures": 0}
    assert [c["name"] for c in document["clusters"]] == ["batch", "echo"]
    points = document["history"]
    assert any(p["routes"].get("orders", {}).get("items_per_s", 0) > 0 for p in points)
    last = document["seq"]
    assert all(p["seq"] > last for p in feed(busy, last)["history"])
    page = httpx.get(busy.admin_url + "/dashboard")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "dashboard/app.js" in page.text and "http" not in page.text.split("<body>")[1].split("</body>")[0]
    script = httpx.get(busy.admin_url + "/dashboard/app.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert "/dashboard" in httpx.get(busy.admin_url + "/").json()["endpoints"]


def test_the_recorder_serves_arrivals_and_batch_timings(busy: MeshbatchProcess) -> None:
    document = httpx.get(busy.admin_url + "/recorder", params={"route": "orders"}).json()
    assert document["route"] == "orders" and document["recording"] is True
    assert document["policy"]["max_items"] == 64 and document["policy"]["max_in_flight"] == 2
    batches = document["batches"]
    assert sum(len(b["arrivals"]) for b in batches) == REQUESTS
    assert all(b["done"] - b["sent"] >= 0.002 and all(a <= b["sent"] for a in b["arrivals"]) for b in batches)
    assert httpx.get(busy.admin_url + "/recorder").json()["routes"]["orders"]["items"] == REQUESTS
    assert httpx.get(busy.admin_url + "/recorder", params={"route": "nope"}).status_code == 404


def run(*args: str, columns: int = 200) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS=str(columns), TERM="dumb")
    return subprocess.run([sys.executable, "-m", "meshbatch", *args], capture_output=True, text=True, timeout=60,
                          env=env)


def test_top_shows_the_same_figures(busy: MeshbatchProcess) -> None:
    once = run("top", "--admin", busy.addresses["admin"], "--once")
    assert once.returncode == 0, once.stderr
    for expected in ("meshbatch top", "orders", "batch routes", "plain routes", "batch sizes", "ingest routes",
                     "events", "sqlite up", "upstream endpoints", busy.addresses["admin"]):
        assert expected in once.stdout, expected
    narrow = run("top", "--admin", busy.admin_url, "--once", columns=80)  # the CI log case: not a terminal
    assert narrow.returncode == 0, narrow.stderr
    assert "…" not in narrow.stdout and max(len(line) for line in narrow.stdout.splitlines()) <= 80
    for expected in ("upstream", "calls/s", "per call", "delivered/s", "backlog", "sqlite up"):
        assert expected in narrow.stdout, expected
    live = run("top", "--admin", busy.admin_url, "--iterations", "3", "--interval", "0.2")
    assert live.returncode == 0, live.stderr
    assert "orders" in live.stdout
    gone = run("top", "--admin", "127.0.0.1:1", "--once")
    assert gone.returncode == 1 and "cannot read the admin API" in gone.stdout


def test_tune_recommends_a_setting_and_plots_it(busy: MeshbatchProcess, tmp_path: Path) -> None:
    plot, trace = tmp_path / "tune.png", tmp_path / "trace.json"
    result = run("tune", "--admin", busy.admin_url, "--route", "orders", "--target-p99-ms", "60000",
                 "--max-items", "8,64", "--wait-ms", "0,2", "--plot", str(plot), "--save", str(trace))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "recommended" in result.stdout and "current" in result.stdout and "batch: {max_items:" in result.stdout
    assert plot.read_bytes()[:4] == b"\x89PNG"
    # the replay's costs are the ones this (maybe loaded) machine measured: a target no loaded run misses
    replay = run("tune", "--input", str(trace), "--target-p99-ms", "60000", "--max-items", "64", "--wait-ms", "0",
                 "--json")
    assert replay.returncode == 0, replay.stdout + replay.stderr
    answer = orjson.loads(replay.stdout)
    assert answer["meets_target"] is True and answer["recommended"]["max_items"] == 64
    assert answer["candidates"][0]["current"] is True
    impossible = run("tune", "--input", str(trace), "--target-p99-ms", "0.001", "--max-items", "64", "--wait-ms", "0")
    assert impossible.returncode == 3 and "cannot meet" in impossible.stdout
