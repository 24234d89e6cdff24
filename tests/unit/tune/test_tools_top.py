"""`meshbatch top`'s rendering from a feed document (the live loop is tested against a real proxy)."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from meshbatch.tools.top import History, frame, sparkline


def feed(seq: int, items_per_s: float) -> dict[str, Any]:
    point = {"seq": seq, "t": float(seq), "routes": {"orders": {"items_per_s": items_per_s}}}
    return {
        "now": 1000.0 + seq, "started": 1000.0, "version": 3, "draining": False, "seq": seq, "history": [point],
        "routes": [
            {"name": "orders", "kind": "batch", "latest": {"items_per_s": items_per_s, "batches_per_s": 50.0,
                                                          "size_mean": 8.5, "queue_ms_p99": 1.5,
                                                          "upstream_ms_p99": 4.25, "batch_errors_per_s": 0.5},
             "batcher": {"queued": 12, "max_queue": 10000, "in_flight": 2, "max_in_flight": 4,
                         "flushes": {"items": 3, "wait": 40, "bytes": 0}},
             "sizes": {"bounds": [1, 2, 4, 8, 16], "window_s": 60.0, "counts": [5, 0, 7, 30, 2, 0]}},
            {"name": "health", "kind": "plain", "latest": {"requests_per_s": 3.0, "request_ms_p99": 0.8}},
        ],
        "clusters": [{"name": "consumer", "endpoints": [
            {"address": "10.0.0.1:80", "health": "healthy", "active_requests": 1, "requests": 99, "errors": 0,
             "latency_ewma_ms": 3.2, "connections": {"open": 2, "idle": 1}},
            {"address": "10.0.0.2:80", "health": "ejected", "active_requests": 0, "requests": 7, "errors": 5}]}],
    }


def test_sparkline_scales_to_the_peak() -> None:
    assert sparkline([0.0, 5.0, 10.0]) == "▁▄█"
    assert sparkline([None, 0.0]) == " ▁"
    assert sparkline([]) == ""


def test_a_frame_shows_routes_sizes_and_endpoints() -> None:
    history = History()
    for seq, rate in ((1, 100.0), (2, 400.0)):
        history.add(feed(seq, rate))
    assert history.values("orders", "items_per_s") == [100.0, 400.0]
    console = Console(record=True, width=220)
    console.print(frame("127.0.0.1:9901", feed(2, 400.0), history))
    text = console.export_text()
    for expected in ("http://127.0.0.1:9901", "serving", "config v3", "orders", "400", "8.50", "12/10000", "2/4",
                     "4.25", "n:3 w:40", "health", "9-16", "consumer", "10.0.0.2:80", "ejected", "3.20"):
        assert expected in text, expected


def test_history_starts_over_when_the_proxy_restarts() -> None:
    history = History()
    history.add(feed(5, 1.0))
    history.add(feed(1, 2.0))
    assert history.values("orders", "items_per_s") == [2.0]
