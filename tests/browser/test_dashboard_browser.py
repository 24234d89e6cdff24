"""The dashboard in a real browser: headless Chromium (Debian's, driven by Selenium through the system chromedriver)
loads /dashboard from a running proxy carrying batched traffic, draws its figures, and a screenshot is taken.

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
def proxy(mesh: Any, upstreams: dict[str, UpstreamServer]) -> Iterator[MeshbatchProcess]:
    upstream = BatchUpstream().start()
    routes = [batch_route("orders", "/orders/", "/b/json-array/ok?ms=3", max_in_flight=2),
              route("plain", "echo", {"path_prefix": "/plain/"})]
    process: MeshbatchProcess = mesh.start(config([listener("main", routes)], [
        cluster("batch", upstream.address), cluster("echo", upstreams["c"].address)]))
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
                i += 1

    threads = [threading.Thread(target=caller, args=(n,), daemon=True) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


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
                const items = s.feed.routes.find(r => r.name === 'orders').batcher.items_total;
                return points >= 2 && total > 0 && items > 0 ? {points, total, items, updates: s.updates} : null;
            """)

        figures = WebDriverWait(browser, 25, poll_frequency=0.25).until(drawn)
        assert figures["items"] > 0 and figures["points"] >= 2 and figures["total"] > 0
        card = browser.find_element(By.CSS_SELECTOR, '.card[data-route="orders"]')
        assert "items/s" in card.text and "mean batch" in card.text
        paths = card.find_elements(By.CSS_SELECTOR, "svg.chart.line path.series")
        assert paths and all(len(p.get_attribute("d") or "") > 10 for p in paths[:1])
        assert card.find_elements(By.CSS_SELECTOR, "svg.chart.bars rect.bar")
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
