"""The dashboard in a real browser: headless Chromium (Debian's, driven by Selenium through the system chromedriver)
loads /dashboard from a running proxy carrying batched traffic and ingested events, draws its figures, and a
screenshot is taken. The cards checked: a batching route (items/s beside upstream calls/s, calls saved), an
ingest route delivering to SQLite and one whose sink cannot be reached (backlog, oldest age, sink state), a plain
route; every line chart's lines in its legend; lines broken where samples are missing.

Chromium comes from the project's own files (`make browser-deps`, run by `make test`); without it the test skips.
Set MESHBATCH_SCREENSHOTS=DIR to keep the screenshot.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from testbed.batch_upstream import BatchUpstream, batch_route
from testbed.config import cluster, config, listener, route
from testbed.proxy import MeshbatchProcess
from testbed.upstream import UpstreamServer

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1300")

pytestmark = pytest.mark.skipif(not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)),
                                reason="chromium and chromium-driver are not installed (make browser-deps)")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not look anything up
    os.environ.setdefault("SE_AVOID_STATS", "true")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def proxy(mesh: Any, upstreams: dict[str, UpstreamServer], tmp_path: Path) -> Iterator[MeshbatchProcess]:
    upstream = BatchUpstream().start()
    routes = [batch_route("orders", "/orders/", "/b/json-array/ok?ms=3", max_in_flight=2),
              route("plain", "echo", {"path_prefix": "/plain/"}),
              {"name": "events", "match": {"path_prefix": "/events/"}, "timeout_ms": 5000,
               "ingest": {"ack": "delivered", "log": {"path": str(tmp_path / "events-log.db")},
                          "sink": {"type": "sqlite", "path": str(tmp_path / "events.db")}}},
              {"name": "stalled", "match": {"path_prefix": "/stalled/"}, "cluster": "nowhere",
               "ingest": {"ack": "fsync", "log": {"path": str(tmp_path / "stalled-log.db")},
                          "sink": {"upstream_path": "/batch"}}}]
    process: MeshbatchProcess = mesh.start(config([listener("main", routes)], [
        cluster("batch", upstream.address), cluster("echo", upstreams["c"].address),
        cluster("nowhere", "127.0.0.1:1")]))
    try:
        yield process
    finally:
        upstream.stop()


def load(base: str, stop: threading.Event, deadline: float) -> None:
    """Bounded traffic: 8 callers until stopped (at most until the deadline)."""

    def caller(n: int) -> None:
        with httpx.Client(base_url=base, timeout=5) as client:
            i = 0
            while not stop.is_set() and time.monotonic() < deadline:
                client.post(f"/orders/{n}-{i}", json={"n": n, "i": i})
                if i % 20 == 0:
                    client.get("/plain/ping")
                if i % 10 == 0 and n < 2:
                    client.post(f"/events/{n}-{i}", json={"n": n, "i": i})
                    client.post(f"/stalled/{n}-{i}", json={"n": n, "i": i})
                i += 1

    threads = [threading.Thread(target=caller, args=(n,), daemon=True) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def check_ingest_cards(browser: Any) -> None:
    """The ingest cards: delivering to SQLite (sink up), and stalled on an unreachable cluster (sink down)."""
    from selenium.webdriver.common.by import By

    events = browser.find_element(By.CSS_SELECTOR, '.card[data-route="events"][data-kind="ingest"]')
    for label in ("accepted/s", "delivered/s", "backlog", "oldest age", "retried/s", "dead letters", "sink"):
        assert label in events.text, label
    assert events.find_element(By.CSS_SELECTOR, "[data-sink-state]").get_attribute("data-sink-state") == "up"
    delivered = events.find_element(By.CSS_SELECTOR, 'path.series[data-name="delivered"]')
    assert len(delivered.get_attribute("d") or "") > 10
    stalled = browser.find_element(By.CSS_SELECTOR, '.card[data-route="stalled"][data-kind="ingest"]')
    assert stalled.find_element(By.CSS_SELECTOR, "[data-sink-state]").get_attribute("data-sink-state") == "down"
    assert "sink down" in stalled.find_element(By.CSS_SELECTOR, ".sink-error").text
    backlog = stalled.find_element(By.CSS_SELECTOR, ".figure.warn .v").text
    assert int(backlog) > 0, backlog
    assert stalled.find_element(By.CSS_SELECTOR, ".figure.age .v").text not in ("", "\N{EN DASH}")


def check_legends(browser: Any) -> None:
    """Every line of every line chart has its entry in the chart's legend (the queue-depth chart's included)."""
    from selenium.webdriver.common.by import By

    missing = browser.execute_script("""
        const out = [];
        for (const box of document.querySelectorAll('.card .chart-box')) {
          const names = [...box.querySelectorAll('.legend-name')].map(e => e.textContent);
          for (const path of box.querySelectorAll('path.series')) {
            if (!names.includes(path.dataset.name)) out.push(box.querySelector('.title').textContent);
          }
        }
        return out;
    """)
    assert missing == []
    titles = [e.text for e in browser.find_elements(By.CSS_SELECTOR, '.card[data-route="orders"] .chart-box .title')]
    assert any(t.startswith("queue depth") and "queued items" in t for t in titles), titles


def check_gaps(browser: Any) -> None:
    """A series with a point without a figure, and one with seconds missing, is drawn in separate runs."""
    drawn = browser.execute_script("""
        const holder = document.createElement('div');
        holder.innerHTML = lineChart([
          {name: 'p99', color: '#000', values: [[0, 1], [1, 2], [2, null], [3, 4], [4, 5], [20, 6], [21, 7]]},
          {name: 'steady', color: '#111', fill: true, values: [[0, 1], [1, 1], [2, 1], [3, 1]]}], '');
        return [...holder.querySelectorAll('path.series')].map(p => [p.dataset.segments, p.getAttribute('d')]);
    """)
    (gappy_runs, gappy), (steady_runs, steady) = drawn
    assert gappy_runs == "3" and gappy.count("M") == 3, gappy
    assert steady_runs == "1" and steady.count("M") == 1, steady


def test_the_dashboard_draws_live_figures(browser: Any, proxy: MeshbatchProcess, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    stop = threading.Event()
    traffic = threading.Thread(target=load, args=(proxy.url("main"), stop, time.monotonic() + 30), daemon=True)
    traffic.start()
    try:
        browser.get(proxy.admin_url + "/dashboard")
        assert browser.title == "meshbatch dashboard"

        def drawn(driver: Any) -> Any:
            return driver.execute_script("""
                const s = window.meshbatchDashboard;
                const card = document.querySelector('.card[data-route="orders"]');
                if (!s || s.updates < 3 || !card) return null;
                const line = card.querySelector('svg.chart.line');
                const bars = card.querySelector('svg.chart.bars');
                const points = line ? Number(line.dataset.points) : 0;
                const total = bars ? Number(bars.dataset.total) : 0;
                const routes = Object.fromEntries(s.feed.routes.map(r => [r.name, r]));
                const items = routes.orders.batcher.items_total;
                const calls = routes.orders.upstream_calls_total;
                const delivered = routes.events.ingest.delivered_total;
                const stalled = routes.stalled.ingest;
                const ready = points >= 2 && total > 0 && items > 0 && calls > 0 && delivered > 0 &&
                    stalled.backlog > 0 && stalled.sink.state === 'down' &&
                    s.history.some(p => (p.routes.orders || {}).calls_per_s > 0) &&
                    s.history.some(p => (p.routes.events || {}).delivered_per_s > 0);
                return ready ? {points, total, items, calls, delivered, updates: s.updates} : null;
            """)

        figures = WebDriverWait(browser, 25, poll_frequency=0.25).until(drawn)
        # Hold the page as drawn (it redraws every second, which would leave the elements read below stale).
        browser.execute_script("window.render = () => {};")
        assert figures["items"] > 0 and figures["points"] >= 2 and figures["total"] > 0
        card = browser.find_element(By.CSS_SELECTOR, '.card[data-route="orders"]')
        assert "items/s" in card.text and "mean batch" in card.text
        assert "upstream calls/s" in card.text and "items per call" in card.text and "calls saved" in card.text
        assert figures["calls"] < figures["items"]  # batching saved calls: fewer upstream calls than items
        ratio = card.find_element(By.CSS_SELECTOR, ".figure.ratio .v").text
        assert float(ratio.split()[0]) >= 1.0, ratio
        paths = card.find_elements(By.CSS_SELECTOR, "svg.chart.line path.series")
        assert paths and all(len(p.get_attribute("d") or "") > 10 for p in paths[:1])
        assert {p.get_attribute("data-name") for p in paths} >= {"items", "upstream calls", "queued items"}
        assert card.find_elements(By.CSS_SELECTOR, "svg.chart.bars rect.bar")
        check_ingest_cards(browser)
        check_legends(browser)
        check_gaps(browser)
        endpoint = browser.find_element(By.CSS_SELECTOR, 'table[data-cluster="batch"] tr[data-endpoint] .dot')
        assert "healthy" in (endpoint.get_attribute("class") or "")
        assert browser.find_element(By.ID, "status").text == "serving"
        assert browser.find_element(By.CSS_SELECTOR, '.card[data-route="plain"]')
        severe = [entry for entry in browser.get_log("browser") if entry.get("level") == "SEVERE"]
        assert not severe, severe
        shot = tmp_path / "dashboard.png"
        assert browser.save_screenshot(str(shot))
        assert shot.read_bytes()[:4] == b"\x89PNG" and shot.stat().st_size > 20_000
        keep = os.environ.get("MESHBATCH_SCREENSHOTS")
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, Path(keep) / "dashboard.png")
    finally:
        stop.set()
        traffic.join(10)
