"""The workers' dashboard feeds (`/dashboard/feed`) as one feed of the same shape: what `meshbatch top` and
scripts read of `meshbatch run --workers N` at the supervisor's admin address. Pure: the supervisor fetches, this
merges.

- The figures of now (routes, batchers, ingest routes, clusters, listeners, status counts) are the total of the
  workers' (merge_json.py's rules: counts, rates and gauges summed; latencies, percentiles, means and ages the
  highest worker's; bucket bounds kept).
- The history is one point a second: the workers sample once a second each, on the same monotonic clock; a
  worker's point goes to the second it was taken in (its `t` rounded), and the point of a second is the total of
  the workers' points in it. A second is given out once every live worker has a point in it, or once it is more
  than `SETTLE` seconds older than the newest point seen; a worker with no point in a second (its sampler drifted
  across the second's edge, or it is restarting) counts with its previous point's figures, as a rate holds until
  the next sample. The merged points' `seq` is their second, so a reader's `since` keeps working across worker
  restarts (a restarted worker's points are read again from its start, and only seconds not given out count).
- `workers`: each worker's index, pid and readiness, and its own figures of the last second summed over its
  routes (requests/s, 5xx/s, its highest request p99), for a breakdown per worker.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from meshbatch.runtime.workers.merge_json import merge

SETTLE = 2  # seconds after which a second is given out even when a worker has no point in it
KEEP = 300  # merged points kept: five minutes, as a worker's own feed


class FeedMerger:
    """The supervisor's merged history, fed with each worker's new points as they are fetched."""

    def __init__(self, keep: int = KEEP) -> None:
        self.keep = keep
        self.cursors: dict[int, tuple[int, int]] = {}  # worker -> (pid, the last of its seq read)
        self.pending: dict[int, dict[int, dict[str, Any]]] = {}  # second -> worker -> its point
        self.last: dict[int, dict[str, Any]] = {}  # worker -> its latest point given out (held over gaps)
        self.points: list[dict[str, Any]] = []
        self.given = 0  # the newest second given out

    def since(self, worker: int, pid: int) -> int:
        """The `since` to ask this worker process for: its points not read yet (all of a new process's)."""
        cursor = self.cursors.get(worker)
        return cursor[1] if cursor is not None and cursor[0] == pid else 0

    def add(self, worker: int, pid: int, feed: dict[str, Any], now: float | None = None) -> None:
        """A worker's feed answer to `since(worker, pid)`: its new points wait in their second (`now`: the
        monotonic clock's time; a point taken later than that is not believed)."""
        history = feed.get("history")
        if not isinstance(history, list):
            return
        newest = self.since(worker, pid)
        for point in history:
            t = point.get("t") if isinstance(point, dict) else None
            if not isinstance(t, int | float) or isinstance(t, bool) or not math.isfinite(t) or \
                    (now is not None and t > now + SETTLE):
                continue
            seq = point.get("seq")
            if isinstance(seq, int) and not isinstance(seq, bool):
                newest = max(newest, seq)
            second = round(t)
            if second > self.given:
                self.pending.setdefault(second, {})[worker] = point
        self.cursors[worker] = (pid, newest)

    def settle(self, live: Sequence[int]) -> None:
        """Give out the seconds every live worker has a point in, and those older than `SETTLE` seconds."""
        if not self.pending:
            return
        newest = max(self.pending)
        for second in sorted(self.pending):
            points = self.pending[second]
            if not all(w in points for w in live) and second > newest - SETTLE:
                break
            del self.pending[second]
            self.last.update(points)
            figures = [(p.get("routes") or {}) for w, p in sorted(self.last.items()) if w in live or w in points]
            self.points.append({"seq": second, "t": float(second), "routes": merge(figures) if figures else {}})
            self.given = second
        del self.points[:-self.keep]
        for worker in [w for w in self.last if w not in live]:
            del self.last[worker]  # a worker gone (or restarting): its figures are not held any longer

    def history(self, since: int) -> list[dict[str, Any]]:
        return [p for p in self.points if p["seq"] > since]


def _own_figures(feed: dict[str, Any]) -> dict[str, Any]:
    """A worker's figures of its last second, summed over its routes (the highest p99 of them)."""
    routes = [r.get("latest") or {} for r in feed.get("routes") or [] if isinstance(r, dict)]
    total = {key: round(sum(float(r.get(key) or 0) for r in routes), 3)
             for key in ("requests_per_s", "errors_5xx_per_s")}
    p99 = [float(r["request_ms_p99"]) for r in routes if isinstance(r.get("request_ms_p99"), int | float)]
    return {**total, "request_ms_p99": max(p99) if p99 else None}


def merged_feed(feeds: Sequence[tuple[dict[str, Any], dict[str, Any] | None]], merger: FeedMerger,
                since: int) -> dict[str, Any]:
    """One feed from the workers': `feeds` has each worker's info (`Member.info()`) and its feed answer (None:
    it did not answer); `merger` has had their new points added and settled."""
    present = [feed for _, feed in feeds if feed is not None]
    out: dict[str, Any] = merge([{k: v for k, v in f.items() if k not in ("history", "seq")} for f in present]) \
        if present else {"routes": [], "clusters": [], "listeners": []}
    starts = [float(f["started"]) for f in present if isinstance(f.get("started"), int | float)]
    nows = [float(f["now"]) for f in present if isinstance(f.get("now"), int | float)]
    if starts:
        out["started"] = min(starts)  # up since the first worker started
    if nows:
        out["now"] = max(nows)
    out["seq"] = merger.given
    out["history"] = merger.history(since)
    out["workers"] = [{**info, **(_own_figures(feed) if feed is not None else {"error": "no answer"})}
                      for info, feed in feeds]
    return out


__all__ = ["SETTLE", "FeedMerger", "merged_feed"]
