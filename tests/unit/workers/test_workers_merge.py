"""Merging the workers' metrics and admin answers into one view: pure, no process."""

from __future__ import annotations

from meshbatch.runtime.workers.merge_json import merge, total_and_workers
from meshbatch.runtime.workers.merge_metrics import MetricMerger, parse, render

WORKER = """# HELP meshbatch_requests_total Requests answered.
# TYPE meshbatch_requests_total counter
meshbatch_requests_total{{listener="main",status="200"}} {requests}
# HELP meshbatch_request_seconds Request latency.
# TYPE meshbatch_request_seconds histogram
meshbatch_request_seconds_bucket{{le="0.01"}} {fast}
meshbatch_request_seconds_bucket{{le="+Inf"}} {requests}
meshbatch_request_seconds_sum {total}
meshbatch_request_seconds_count {requests}
# HELP meshbatch_loop_lag_seconds Event-loop lag.
# TYPE meshbatch_loop_lag_seconds gauge
meshbatch_loop_lag_seconds {lag}
"""


def scrape(requests: int, fast: int, total: float, lag: float) -> str:
    return WORKER.format(requests=requests, fast=fast, total=total, lag=lag)


def values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {key: value for family in parse(text).values() for key, value in family.samples.items()}


def test_counters_and_histograms_are_summed_and_gauges_kept_per_worker() -> None:
    merger = MetricMerger()
    merger.update(0, 100, parse(scrape(10, 7, 0.5, 0.002)))
    merger.update(1, 101, parse(scrape(30, 20, 1.5, 0.004)))
    out = values(render(merger.merged()).decode())
    assert out[("meshbatch_requests_total", (("listener", "main"), ("status", "200")))] == 40
    assert out[("meshbatch_request_seconds_bucket", (("le", "0.01"),))] == 27
    assert out[("meshbatch_request_seconds_bucket", (("le", "+Inf"),))] == 40
    assert out[("meshbatch_request_seconds_sum", ())] == 2.0
    assert out[("meshbatch_request_seconds_count", ())] == 40
    assert out[("meshbatch_loop_lag_seconds", (("worker", "0"),))] == 0.002
    assert out[("meshbatch_loop_lag_seconds", (("worker", "1"),))] == 0.004
    assert ("meshbatch_loop_lag_seconds", ()) not in out


def test_a_restarted_worker_never_makes_a_sum_go_down() -> None:
    merger = MetricMerger()
    merger.update(0, 100, parse(scrape(10, 10, 1.0, 0.0)))
    merger.update(1, 101, parse(scrape(5, 5, 1.0, 0.0)))
    merger.update(0, 200, parse(scrape(2, 2, 0.1, 0.0)))  # worker 0 is a new process: it counts from zero again
    merger.update(1, 101, None)  # worker 1 did not answer this scrape: its last one counts
    out = values(render(merger.merged()).decode())
    assert out[("meshbatch_requests_total", (("listener", "main"), ("status", "200")))] == 17
    assert out[("meshbatch_request_seconds_count", ())] == 17
    merger.retire(1)  # worker 1 died: its counters stay, its gauges go
    out = values(render(merger.merged()).decode())
    assert out[("meshbatch_requests_total", (("listener", "main"), ("status", "200")))] == 17
    assert ("meshbatch_loop_lag_seconds", (("worker", "1"),)) not in out
    assert ("meshbatch_loop_lag_seconds", (("worker", "0"),)) in out


def test_rendering_escapes_label_values_and_parses_back() -> None:
    hostile = 'a"b\\c\nd'
    escaped = hostile.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    text = '# HELP x_total X.\n# TYPE x_total counter\nx_total{path="' + escaped + '"} 1\n'
    merger = MetricMerger()
    merger.update(0, 1, parse(text))
    merger.update(1, 2, parse(text))
    assert values(render(merger.merged()).decode()) == {("x_total", (("path", hostile),)): 2.0}


def test_json_totals_sum_counts_and_take_the_highest_age() -> None:
    a = {"batchers": {"orders": {"queued": 3, "items_per_s": 10.5, "oldest_ms": 4.0, "state": "serving",
                                 "codec": "json-array", "keys": [{"key": ["a"], "queued": 1}]}}}
    b = {"batchers": {"orders": {"queued": 2, "items_per_s": 1.0, "oldest_ms": 9.0, "state": "draining",
                                 "codec": "json-array", "keys": [{"key": ["b"], "queued": 2},
                                                                  {"key": ["a"], "queued": 5}]}}}
    total = merge([a, b])["batchers"]["orders"]
    assert total["queued"] == 5 and total["items_per_s"] == 11.5 and total["oldest_ms"] == 9.0
    assert total["codec"] == "json-array" and total["state"] == ["serving", "draining"]
    assert total["keys"] == [{"key": ["a"], "queued": 6}, {"key": ["b"], "queued": 2}]


def test_clusters_merge_by_name_and_a_silent_worker_is_named() -> None:
    one = {"clusters": [{"name": "up", "endpoints": [{"address": "10.0.0.1:80", "active": 1, "healthy": True}]}]}
    two = {"clusters": [{"name": "up", "endpoints": [{"address": "10.0.0.1:80", "active": 2, "healthy": True}]}]}
    out = total_and_workers([(0, 10, one), (1, 11, two), (2, 12, None)])
    assert out["clusters"] == [{"name": "up", "endpoints": [{"address": "10.0.0.1:80", "active": 3, "healthy": True}]}]
    assert [w["worker"] for w in out["workers"]] == [0, 1, 2]
    assert out["workers"][0]["clusters"] == one["clusters"] and out["workers"][0]["pid"] == 10
    assert "error" in out["workers"][2]
    silent = {"worker": 0, "pid": 10, "error": out["workers"][2]["error"]}
    assert total_and_workers([(0, 10, None)]) == {"workers": [silent]}
