"""The supervisor's one dashboard feed from its workers' (runtime/workers/merge_feed.py): the figures of now
totalled, the history a point a second summed over the workers, `since` across worker restarts, hostile feeds."""

from __future__ import annotations

from typing import Any

from meshbatch.runtime.workers.merge_feed import SETTLE, FeedMerger, merged_feed


def point(seq: int, t: float, requests: float, p99: float | None = None) -> dict[str, Any]:
    return {"seq": seq, "t": t, "routes": {"all": {"requests_per_s": requests, "request_ms_p99": p99,
                                                   "queued": 1}}}


def feed(*points: dict[str, Any], requests: float = 0.0, p99: float = 1.0, started: float = 100.0,
         health: str = "healthy") -> dict[str, Any]:
    return {
        "now": 200.0, "started": started, "version": 2, "loaded_at": 150.0, "draining": False, "seq": 9,
        "routes": [{"name": "all", "kind": "plain", "cluster": "echo", "statuses": {"200": 10},
                    "latest": {"requests_per_s": requests, "request_ms_p99": p99, "request_ms_mean": p99 / 2},
                    "sizes": {"bounds": [1, 2, 4], "window_s": 60.0, "counts": [1, 2, 3, 4]}}],
        "clusters": [{"name": "echo", "endpoints": [{"address": "10.0.0.1:80", "health": health, "requests": 5}]}],
        "listeners": [], "history": list(points),
    }


def test_the_figures_of_now_are_the_workers_total() -> None:
    merger = FeedMerger()
    infos = [{"worker": 0, "pid": 10, "ready": True}, {"worker": 1, "pid": 11, "ready": True}]
    out = merged_feed([(infos[0], feed(requests=30.0, p99=4.0, started=90.0)),
                       (infos[1], feed(requests=20.0, p99=9.0, health="ejected"))], merger, 0)
    route = out["routes"][0]
    assert route["statuses"] == {"200": 20} and route["latest"]["requests_per_s"] == 50.0
    assert route["latest"]["request_ms_p99"] == 9.0 and route["latest"]["request_ms_mean"] == 4.5  # the highest
    assert route["sizes"] == {"bounds": [1, 2, 4], "window_s": 60.0, "counts": [2, 4, 6, 8]}  # bounds kept
    assert route["kind"] == "plain" and out["version"] == 2 and out["loaded_at"] == 150.0
    assert out["started"] == 90.0 and out["now"] == 200.0  # up since the first worker, not a sum of clocks
    endpoint = out["clusters"][0]["endpoints"][0]
    assert endpoint["requests"] == 10 and endpoint["health"] == ["healthy", "ejected"]
    assert [(w["worker"], w["pid"], w["requests_per_s"], w["request_ms_p99"]) for w in out["workers"]] == \
        [(0, 10, 30.0, 4.0), (1, 11, 20.0, 9.0)]


def test_a_second_is_given_out_once_every_live_worker_has_a_point_in_it() -> None:
    merger = FeedMerger()
    merger.add(0, 10, feed(point(1, 100.2, 5.0, 2.0), point(2, 101.2, 6.0, 2.0)))
    merger.add(1, 11, feed(point(1, 99.9, 1.0, 7.0)))  # worker 1 samples just before the second's edge
    merger.settle([0, 1])
    assert [(p["seq"], p["routes"]["all"]["requests_per_s"]) for p in merger.points] == [(100, 6.0)]
    assert merger.points[0]["routes"]["all"]["request_ms_p99"] == 7.0 and merger.points[0]["routes"]["all"][
        "queued"] == 2
    assert merger.since(0, 10) == 2 and merger.since(1, 11) == 1  # each worker read from where it was left
    merger.add(1, 11, feed(point(2, 100.9, 3.0)))
    merger.settle([0, 1])
    assert [(p["seq"], p["routes"]["all"]["requests_per_s"]) for p in merger.history(100)] == [(101, 9.0)]
    assert merger.history(101) == [] and merger.given == 101


def test_a_worker_without_a_point_in_a_second_counts_with_its_last_figures() -> None:
    merger = FeedMerger()
    merger.add(0, 10, feed(point(1, 100.0, 5.0)))
    merger.add(1, 11, feed(point(1, 100.0, 1.0)))
    merger.settle([0, 1])
    merger.add(0, 10, feed(*(point(s, 100.0 + s, 5.0) for s in range(2, 3 + SETTLE))))  # worker 1 falls silent
    merger.settle([0, 1])
    held = merger.history(100)
    assert [p["seq"] for p in held] == [102]  # seconds within SETTLE of the newest wait for worker 1
    assert held[0]["routes"]["all"]["requests_per_s"] == 6.0  # worker 1's last figures held
    merger.settle([0])  # worker 1 is gone (restarting): its figures no longer count
    assert [p["routes"]["all"]["requests_per_s"] for p in merger.history(102)] == [5.0, 5.0]


def test_a_restarted_worker_is_read_from_its_start_and_old_seconds_are_not_given_twice() -> None:
    merger = FeedMerger()
    merger.add(0, 10, feed(point(40, 100.0, 5.0)))
    merger.settle([0])
    assert merger.since(0, 10) == 40 and merger.since(0, 99) == 0  # a new pid: all its points
    merger.add(0, 99, feed(point(1, 99.0, 100.0), point(2, 101.0, 7.0)))
    merger.settle([0])
    assert [(p["seq"], p["routes"]["all"]["requests_per_s"]) for p in merger.points] == [(100, 5.0), (101, 7.0)]


def test_hostile_or_broken_feeds_are_skipped() -> None:
    merger = FeedMerger(keep=3)
    bad: list[Any] = [None, 7, "x", {}, {"t": "soon"}, {"t": True, "seq": "1"}, {"t": 1e300, "seq": True}]
    merger.add(0, 10, {"history": bad}, now=1000.0)
    merger.add(0, 10, {"history": "not a list"})
    merger.add(1, 11, feed(*(point(s, 100.0 + s, 1.0) for s in range(1, 50))))
    merger.settle([1])
    assert len(merger.points) == 3  # bounded: the newest `keep`
    out = merged_feed([({"worker": 0, "pid": 10}, None), ({"worker": 1, "pid": 11}, {"routes": "x"})], merger, 0)
    assert out["workers"][0]["error"] == "no answer" and out["workers"][1]["requests_per_s"] == 0.0
    assert merged_feed([], FeedMerger(), 0)["routes"] == []
