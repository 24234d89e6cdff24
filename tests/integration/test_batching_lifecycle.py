"""Drain (SIGTERM) and reload (SIGHUP) of `meshbatch run` with batches queued and in flight: queued items are
flushed, every admitted request is answered exactly once, nothing is lost; a reload that changes `max_items`
takes effect without dropping a request."""

from __future__ import annotations

import signal
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from testbed.batch_upstream import BatchUpstream, Callers, Plug, batch_route, serving, wait_until
from testbed.config import cluster, config, listener
from testbed.proxy import MeshbatchProcess, write_config

upstream = pytest.fixture(scope="module", name="upstream")(serving)


@pytest.fixture
def batch_upstream(upstream: BatchUpstream) -> Iterator[BatchUpstream]:
    upstream.reset()
    yield upstream
    upstream.release()


def orders(upstream: BatchUpstream, drain_timeout_ms: int = 5000, **batch: Any) -> dict[str, Any]:
    route = batch_route("orders", "/o/", "/b/json-array/ok", **batch)
    return config([listener("main", [route])], [cluster("batch", upstream.address)],
                  drain_timeout_ms=drain_timeout_ms)


def start(mesh: Any, cfg: dict[str, Any]) -> tuple[MeshbatchProcess, Callers]:
    proxy: MeshbatchProcess = mesh.start(cfg)
    return proxy, Callers(proxy.url("main"), proxy.admin_url)


# drain ------------------------------------------------------------------------------------------------------
def test_sigterm_flushes_queued_items_and_answers_everyone(mesh: Any, batch_upstream: BatchUpstream) -> None:
    proxy, callers = start(mesh, orders(batch_upstream, max_items=4))
    with callers, Plug(callers, batch_upstream, "/o/plug", "orders", release_all=False) as plug:
        queued = [callers.post("/o/x", {"i": i}) for i in range(10)]
        callers.wait_queued("orders", 10)
        mark = proxy.mark()
        proxy.send_signal(signal.SIGTERM)
        proxy.wait_for_line("meshbatch: draining", start=mark)
        wait_until(lambda: callers.batcher("orders")["state"] == "draining", 5, "the batcher to drain")
        batch_upstream.release()
        responses = [f.result(10) for f in queued]
        assert plug.response.status_code == 200
    assert [r.status_code for r in responses] == [200] * 10
    assert [r.json()["echo"]["i"] for r in responses] == list(range(10)), "each caller its own answer"
    assert {r.headers["x-meshbatch-flush"] for r in responses} == {"drain"}
    assert sorted(int(r.headers["x-meshbatch-batch-size"]) for r in responses) == [2, 2] + [4] * 8
    assert proxy.wait(10) == 0
    assert "meshbatch: drained unfinished=0" in proxy.stderr
    items = Counter(i.get("i") for i in batch_upstream.items() if "i" in i)
    assert items == Counter(range(10)), "every queued item sent exactly once"
    assert [b.size for b in batch_upstream.snapshot()] == [1, 4, 4, 2], "max_items still holds while draining"
    assert callers.sent == callers.answered == 11


def test_sigterm_does_not_wait_out_a_hold(mesh: Any, batch_upstream: BatchUpstream) -> None:
    # A route timeout well past twice the hold: on a route with no batch seen yet, a deadline flush reserves the
    # hold too, so a shorter timeout would send the items at once instead of holding them.
    proxy, callers = start(mesh, orders(batch_upstream, min_wait_ms=20_000, max_wait_ms=20_000, max_in_flight=4,
                                        timeout_ms=60_000))
    with callers:
        queued = [callers.post("/o/x", {"i": i}) for i in range(5)]
        callers.wait_queued("orders", 5)
        proxy.send_signal(signal.SIGTERM)
        responses = [f.result(5) for f in queued]
    assert [r.status_code for r in responses] == [200] * 5
    assert {r.headers["x-meshbatch-flush"] for r in responses} == {"drain"}
    assert {r.headers["x-meshbatch-batch-size"] for r in responses} == {"5"}
    assert proxy.wait(10) == 0


def test_drain_timeout_answers_what_is_left(mesh: Any, batch_upstream: BatchUpstream) -> None:
    proxy, callers = start(mesh, orders(batch_upstream, drain_timeout_ms=400))
    with callers, Plug(callers, batch_upstream, "/o/plug", "orders", release_all=False) as plug:
        queued = [callers.post("/o/x", {"i": i}) for i in range(4)]
        callers.wait_queued("orders", 4)
        proxy.send_signal(signal.SIGTERM)
        responses = [f.result(10) for f in queued]
        stuck = plug.response
        batch_upstream.release()
    assert stuck.status_code == 504 and stuck.json()["reason"] == "drain_timeout", stuck.text
    for response in responses:
        assert response.status_code == 503, response.text
        assert response.json()["reason"] == "draining"
    assert proxy.wait(10) == 0
    assert [b.items for b in batch_upstream.snapshot()] == [[{"plug": True}]], "queued items were never sent"
    assert callers.sent == callers.answered == 5


# reload -----------------------------------------------------------------------------------------------------
def test_sighup_changing_max_items_drops_nothing(mesh: Any, batch_upstream: BatchUpstream) -> None:
    # the held requests wait through the reload, whose validating child takes a few seconds on a loaded machine
    proxy, callers = start(mesh, orders(batch_upstream, max_items=8, timeout_ms=15_000))
    with callers:
        with Plug(callers, batch_upstream, "/o/plug", "orders", release_all=False) as plug:
            old = [callers.post("/o/x", {"old": i}) for i in range(10)]
            callers.wait_queued("orders", 10)
            write_config(proxy.config_path, orders(batch_upstream, max_items=3, timeout_ms=15_000))
            mark = proxy.mark()
            proxy.send_signal(signal.SIGHUP)
            proxy.wait_for_line("meshbatch: reloaded", start=mark)
            summary = callers.batcher("orders")
            assert summary["policy"]["max_items"] == 3 and summary["queued"] == 0, "the new batcher serves"
            new = [callers.post("/o/x", {"new": 0})]
            wait_until(lambda: callers.batcher("orders")["in_flight"] == 1, 5, "the first new batch in flight")
            new += [callers.post("/o/x", {"new": i}) for i in range(1, 8)]
            callers.wait_queued("orders", 7)
            batch_upstream.release()
        answers = [f.result(10) for f in [plug.future, *old, *new]]
        assert [r.status_code for r in answers] == [200] * 19
        old_sizes = {int(r.headers["x-meshbatch-batch-size"]) for r in answers[1:11]}
        assert max(old_sizes) == 8 and {r.headers["x-meshbatch-flush"] for r in answers[1:11]} == {"drain"}
        new_sizes = [int(r.headers["x-meshbatch-batch-size"]) for r in answers[11:]]
        assert max(new_sizes) == 3, f"the reloaded max_items=3 holds: {new_sizes}"
        received = Counter(str(i) for i in batch_upstream.items())
        assert all(n == 1 for n in received.values()) and len(received) == 19

        # and under continuous load, a second reload loses nothing either
        stop = threading.Event()
        statuses: list[int] = []

        def load() -> None:
            with httpx.Client(base_url=proxy.url("main"), timeout=10) as client:
                n = 0
                while not stop.is_set():
                    statuses.append(client.post("/o/x", json={"load": n}).status_code)
                    n += 1

        threads = [threading.Thread(target=load) for _ in range(6)]
        for thread in threads:
            thread.start()
        wait_until(lambda: len(statuses) > 50, 5, "load to flow")
        write_config(proxy.config_path, orders(batch_upstream, max_items=5))
        mark = proxy.mark()
        proxy.send_signal(signal.SIGHUP)
        proxy.wait_for_line("meshbatch: reloaded", start=mark)
        count = len(statuses)
        wait_until(lambda: len(statuses) > count + 50, 5, "load to flow after the reload")
        stop.set()
        for thread in threads:
            thread.join(10)
        assert set(statuses) == {200}, Counter(statuses)
        assert callers.batcher("orders")["policy"]["max_items"] == 5
    proxy.terminate()


def test_sighup_keeps_an_unchanged_batcher_and_its_queue(mesh: Any, batch_upstream: BatchUpstream) -> None:
    # the held batch waits through the reload, whose validating child takes a few seconds on a loaded machine
    proxy, callers = start(mesh, orders(batch_upstream, max_items=8, timeout_ms=15_000))
    with callers:
        with Plug(callers, batch_upstream, "/o/plug", "orders") as plug:
            queued = [callers.post("/o/x", {"q": i}) for i in range(5)]
            callers.wait_queued("orders", 5)
            changed = orders(batch_upstream, max_items=8, timeout_ms=15_000)
            changed["listeners"][0]["routes"].append(batch_route("other", "/other/", "/b/ndjson/ok"))
            write_config(proxy.config_path, changed)
            mark = proxy.mark()
            proxy.send_signal(signal.SIGHUP)
            proxy.wait_for_line("meshbatch: reloaded", start=mark)
            summary = callers.wait_queued("orders", 5)
            assert summary["in_flight"] == 1, "the same batcher, queue and batch in flight"
        responses = [f.result(10) for f in queued]
        assert plug.response.status_code == 200
        assert {r.headers["x-meshbatch-flush"] for r in responses} == {"wait"}, "carried over, not drained"
        assert {r.headers["x-meshbatch-batch-size"] for r in responses} == {"5"}
        assert callers.call("/other/x", {"new": 1}).json()["echo"] == {"new": 1}
    proxy.terminate()
