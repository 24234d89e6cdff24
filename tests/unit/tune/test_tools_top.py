"""`meshbatch top`'s rendering from a feed document (the live loop is tested against a real proxy): a table per
kind of route, named figures, and every frame readable at 80, 120 and 200 columns."""

from __future__ import annotations

from typing import Any

import pytest
from rich.table import Table

from meshbatch.tools.top import History, frame, sparkline
from meshbatch.tools.top_tables import fmt_age, fmt_count, saved
from testbed.terminal import assert_readable, render


def feed(seq: int, items_per_s: float) -> dict[str, Any]:
    point = {"seq": seq, "t": float(seq), "routes": {
        "orders": {"items_per_s": items_per_s, "calls_per_s": items_per_s / 8},
        "events": {"delivered_per_s": 120.0 + seq}, "health": {"requests_per_s": 3.0}}}
    return {
        "now": 1000.0 + seq, "started": 1000.0, "version": 3, "draining": False, "seq": seq, "history": [point],
        "routes": [
            {"name": "orders", "kind": "batch", "upstream_calls_total": 500,
             "latest": {"items_per_s": items_per_s, "calls_per_s": items_per_s / 8, "batches_per_s": 50.0,
                        "size_mean": 8.5, "queue_ms_p50": 0.4, "queue_ms_p99": 1.5, "upstream_ms_p50": 3.0,
                        "upstream_ms_p99": 4.25, "batch_errors_per_s": 0.5, "rejected_per_s": 0.0},
             "batcher": {"queued": 12, "max_queue": 10000, "in_flight": 2, "max_in_flight": 4, "items_total": 4000,
                         "flushes": {"items": 3, "wait": 40, "bytes": 0}},
             "sizes": {"bounds": [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096], "window_s": 60.0,
                       "counts": [5, 0, 7, 30, 2, 0, 0, 3, 1, 4, 9, 2, 1, 0]}},
            {"name": "events", "kind": "ingest",
             "latest": {"accepted_per_s": 130.0, "delivered_per_s": 122.0, "retried_per_s": 2.0},
             "ingest": {"state": "serving", "ack": "fsync", "log": "sqlite", "backlog": 15200, "bytes": 1 << 20,
                        "oldest_age_s": 75.0, "dead_letters": 3, "in_flight": 1, "accepted_total": 90000,
                        "delivered_total": 74800, "retried_total": 40, "dead_lettered_total": 3,
                        "sink": {"type": "postgres", "state": "down", "error": "connection refused", "failures": 4}}},
            {"name": "health", "kind": "plain", "latest": {"requests_per_s": 3.0, "request_ms_p99": 0.8}},
        ],
        "clusters": [{"name": "consumer", "endpoints": [
            {"address": "10.0.0.1:80", "health": "healthy", "active_requests": 1, "requests": 99, "errors": 0,
             "latency_ewma_ms": 3.2, "connections": {"open": 2, "idle": 1}},
            {"address": "10.0.0.2:80", "health": "ejected", "active_requests": 0, "requests": 7, "errors": 5}]}],
    }


def history_of(points: int) -> History:
    history = History()
    for seq in range(1, points + 1):
        history.add(feed(seq, 100.0 * seq))
    return history


def test_sparkline_scales_to_the_peak() -> None:
    assert sparkline([0.0, 5.0, 10.0]) == "▁▄█"
    assert sparkline([None, 0.0]) == " ▁"
    assert sparkline([]) == ""


def test_a_frame_shows_each_kind_of_route_with_named_figures() -> None:
    history = history_of(2)
    assert history.values("orders", "items_per_s") == [100.0, 200.0]
    text = render(frame("127.0.0.1:9901", feed(2, 400.0), history, 200), 200)
    for expected in ("http://127.0.0.1:9901", "serving", "config v3", "batch routes", "orders", "400", "8.50",
                     "12/10k", "2/4", "4.25", "wait 93% items 7%", "ingest routes", "events", "15.2k", "1m15s",
                     "postgres down", "sink down (4 failed attempts in a row): connection refused", "plain routes",
                     "health", "consumer", "10.0.0.2:80", "ejected", "3.20"):
        assert expected in text, expected
    assert "n:3" not in text and "w:40" not in text
    orders = next(line for line in text.splitlines() if line.startswith("orders"))
    assert " 50.0 " in orders and " 8.00 " in orders and " 88% " in orders  # upstream calls/s, items per call, saved


@pytest.mark.parametrize("width", [80, 120, 200])
def test_top_reads_whole_at_every_width(width: int) -> None:
    group = frame("127.0.0.1:9901", feed(90, 400.0), history_of(90), width)
    tables = [part for part in group.renderables if isinstance(part, Table)]
    assert [t.title for t in tables] == ["batch routes", "batch sizes, last 60s (batches per size)", "ingest routes",
                                         "plain routes", "upstream endpoints"]
    assert_readable(render(group, width), tables, width)
    headers = {str(t.title): [str(c.header) for c in t.columns] for t in tables}
    for title, essential in (("batch routes", ["route", "items/s", "upstream\ncalls/s", "items\nper call"]),
                             ("ingest routes", ["route", "delivered/s", "backlog", "oldest\nage", "retried/s",
                                                "dead\nletters", "sink"]),
                             ("upstream endpoints", ["cluster", "endpoint", "health"])):
        assert all(h in headers[title] for h in essential), (title, headers[title])
    sparks = [h for t in headers.values() for h in t if "last" in h]
    if width == 200:  # a wide terminal shows every column and the trends
        assert len(headers["batch routes"]) == 16 and any(h.startswith("items/s\nlast") for h in sparks)
        assert len(headers["ingest routes"]) == 10 and "delivered/s\nlast 60s" in sparks
    if width == 80:  # sparklines go first, then the least important columns
        assert "items/s\nlast 60s" not in headers["batch routes"] and "flushed by" not in headers["batch routes"]
    assert all(len(h) for h in sparks)


def test_history_breaks_at_missing_seconds() -> None:
    history = History()
    for seq, t in ((1, 1.0), (2, 2.0), (3, 6.0)):
        document = feed(seq, 10.0)
        document["history"][0]["t"] = t
        history.add(document)
    assert history.values("orders", "items_per_s") == [10.0, 10.0, None, None, None, 10.0]


def test_history_starts_over_when_the_proxy_restarts() -> None:
    history = History()
    history.add(feed(5, 1.0))
    history.add(feed(1, 2.0))
    assert history.values("orders", "items_per_s") == [2.0]


def test_figures_are_short_and_named() -> None:
    assert [fmt_count(n) for n in (812, 10000, 12500, 3_200_000, None)] == ["812", "10k", "12.5k", "3.2M", "-"]
    assert [fmt_age(s) for s in (0.25, 4.2, 75, 12600, "x", -1)] == ["250ms", "4.2s", "1m15s", "3h30m", "-", "-"]
    assert saved(100, 12) == "88%" and saved(0, 0) == "-" and saved(5, 9) == "-"


def test_a_sparse_feed_shows_dashes_not_an_error() -> None:
    """A feed missing figures (a proxy of another version, a route just built) still renders, with dashes."""
    sparse: dict[str, Any] = {"seq": 1, "history": [{"seq": 1, "t": 1.0}], "routes": [
        {"name": "b", "batcher": {"flushes": {}}, "sizes": {"bounds": [1, 2], "counts": [0, "x"]}},
        {"name": "i", "ingest": {"sink": {}}}, {"name": "p"}], "clusters": [{"endpoints": [{}]}]}
    history = History()
    history.add(sparse)
    group = frame("127.0.0.1:9901", sparse, history, 80)
    text = render(group, 80)
    for expected in ("batch routes", "ingest routes", "plain routes", "upstream endpoints", "-/-"):
        assert expected in text, expected
    assert_readable(text, [t for t in group.renderables if isinstance(t, Table)], 80)


@pytest.mark.parametrize("width", [80, 120])
def test_at_a_supervisors_address_top_shows_the_total_and_a_line_per_worker(width: int) -> None:
    """`run --workers N`: the supervisor's feed is the workers' total, with `workers` (their own figures); a state
    the workers disagree on (an endpoint ejected by one) reads as both."""
    total = feed(3, 400.0)
    total["clusters"][0]["endpoints"][1]["health"] = ["healthy", "ejected"]
    total["workers"] = [
        {"worker": 0, "pid": 4101, "ready": True, "restarts": 0, "requests_per_s": 250.0, "errors_5xx_per_s": 0.0,
         "request_ms_p99": 1.25},
        {"worker": 1, "pid": 4102, "ready": True, "restarts": 2, "requests_per_s": 153.0, "errors_5xx_per_s": 0.5,
         "request_ms_p99": 2.5},
        {"worker": 2, "pid": 4103, "ready": False, "restarts": 0, "error": "no answer"}]
    group = frame("127.0.0.1:9901", total, history_of(3), width)
    text = render(group, width)
    tables = [part for part in group.renderables if isinstance(part, Table)]
    assert [t.title for t in tables][-2:] == ["workers", "upstream endpoints"]
    assert_readable(text, tables, width)
    assert "3 workers, total" in text and "healthy/ejected" in text
    lines = {line.split()[0]: line for line in text.splitlines() if line.split()[:1] in (["0"], ["1"], ["2"])}
    assert "4101" in lines["0"] and "ready" in lines["0"] and "250" in lines["0"] and "1.25" in lines["0"]
    assert "153" in lines["1"] and "0.50" in lines["1"] and "2.50" in lines["1"]
    assert "no answer" in lines["2"]
    one = frame("127.0.0.1:9901", feed(3, 400.0), history_of(3), width, worker=1)
    assert "worker 1" in render(one, width) and "workers" not in [t.title for t in one.renderables
                                                                  if isinstance(t, Table)]
