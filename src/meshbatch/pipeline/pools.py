"""The pipeline worker pools of one proxy, by route, kept across reloads while a route's pipeline is unchanged.

Snapshots are built, then either applied or abandoned, so pools follow the same two steps: every pool a build
asks for (`attach`, or `keep` for an ingest route carried over as it is) is noted; `commit()` (the snapshot went
live) closes the pools it did not ask for and starts the ones it did; `rollback()` (it was abandoned) closes
the ones only it asked for. A pool is the same when the route's name and its workers' spec (the steps with
their schemas read, the dead-letter flag, the limits) are: a changed schema file is a new pool, as it is a new
inline pipeline.

One `PipelinePools` per proxy, found through the proxy's metrics registry (the one object the snapshot builder
hands to every route's wiring), so two proxies in one process (tests) never share or close each other's pools.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterable
from typing import Any

from meshbatch.config.plain import PipelineRoute
from meshbatch.pipeline import wire
from meshbatch.pipeline.pool import WorkerPool
from meshbatch.pipeline.runner import Pipeline
from meshbatch.telemetry.metrics import Registry


class PipelinePools:
    def __init__(self, metrics: Registry | None = None) -> None:
        self._pools: list[WorkerPool] = []
        self._live: set[int] = set()  # ids of the pools of the snapshot in service
        self._asked: set[int] = set()  # ids of the pools the snapshot being built asked for
        self._closing: set[asyncio.Task[None]] = set()
        self.restarts = (metrics or Registry()).counter(
            "meshbatch_pipeline_worker_restarts_total",
            "Pipeline workers replaced, by route and cause (cpu, timeout, lost, start_failed).", ["route", "cause"])
        if metrics is not None:
            metrics.gauge("meshbatch_pipeline_workers", "Pipeline worker processes by route and state (alive, busy, "
                          "queued: requests waiting for one).", ["route", "state"], self._gauge)

    def attach(self, route: PipelineRoute, pipeline: Pipeline, dead_letters: bool) -> None:
        """Give `pipeline` the route's worker pool (the same one as before when nothing changed)."""
        if not pipeline or route.pipeline_limits.workers == 0:
            return
        spec = wire.init(route, dead_letters)
        pool = next((p for p in self._pools if p.route == route.name and p.spec == spec and not p.closed), None)
        if pool is None:
            pool = WorkerPool(route.name, spec, route.pipeline_limits, restarts=self.restarts)
            self._pools.append(pool)
        self._asked.add(id(pool))
        pipeline.offload = pool

    def keep(self, pipeline: Pipeline | None) -> None:
        """A pipeline carried over into the snapshot being built keeps its pool."""
        if pipeline is not None and isinstance(pipeline.offload, WorkerPool):
            self._asked.add(id(pipeline.offload))

    def commit(self) -> None:
        """The snapshot built last is in service: start its pools, close the others (after their queues)."""
        self._live, self._asked = self._asked, set()
        for pool in self._pools:
            if id(pool) in self._live:
                pool.start()
        self._retire(lambda pool: id(pool) not in self._live)

    def rollback(self) -> None:
        """The snapshot built last was abandoned: close the pools only it asked for."""
        asked, self._asked = self._asked, set()
        self._retire(lambda pool: id(pool) in asked and id(pool) not in self._live)

    def _retire(self, doomed: Any) -> None:
        for pool in [p for p in self._pools if doomed(p)]:
            self._pools.remove(pool)
            task = asyncio.get_running_loop().create_task(pool.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def stop(self, timeout: float) -> None:
        """Drain: every pool finishes its queue (within `timeout`) and stops its workers."""
        pools, self._pools = self._pools, []
        self._live, self._asked = set(), set()
        await asyncio.gather(*(p.close(timeout) for p in pools), *self._closing, return_exceptions=True)

    def pools(self) -> list[WorkerPool]:
        return list(self._pools)

    def _gauge(self) -> Iterable[tuple[tuple[str, ...], float]]:
        for pool in self._pools:
            summary = pool.summary()
            for state in ("alive", "busy", "queued"):
                yield (pool.route, state), summary[state]


_BY_PROXY: weakref.WeakKeyDictionary[Registry, PipelinePools] = weakref.WeakKeyDictionary()


def pipeline_pools(metrics: Registry) -> PipelinePools:
    """The pools of the proxy whose metrics registry this is."""
    pools = _BY_PROXY.get(metrics)
    if pools is None:
        pools = _BY_PROXY[metrics] = PipelinePools(metrics)
    return pools


__all__ = ["PipelinePools", "pipeline_pools"]
