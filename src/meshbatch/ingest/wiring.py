"""How the runtime builds, starts and retires ingest routes and pipelines (called from `runtime.snapshot`/`app`).

On reload an ingest route whose config (and cluster) did not change is carried over as it is; a changed one is
drained (deliveries in flight finish, pending commits are written, its log file is released) before its
successor opens the same log and recovers what is left in it.

A pipeline gets its route's worker processes here (`meshbatch.pipeline.pools`: the same pool as before when the
route's pipeline did not change); the proxy starts and stops them with its snapshots (`start_pipelines`,
`commit_pipelines`, `stop_pipelines`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from meshbatch.config.model import Route
from meshbatch.ingest.route import IngestRoute
from meshbatch.pipeline import PipelineLayer, build_pipeline
from meshbatch.pipeline.pools import pipeline_pools
from meshbatch.pipeline.stages.compress import CompressingSender, Send
from meshbatch.service import Service
from meshbatch.telemetry.metrics import Registry


def wrap_send(route: Route, send: Send) -> Send:
    """The route's batch sender, compressing bodies when its pipeline has a `compress` step."""
    for step in route.pipeline:
        if step.compress is not None:
            return CompressingSender(send, step.compress)
    return send


def with_pipeline(route: Route, handler: Service, metrics: Registry) -> Service:
    """A batching route's handler behind its pipeline (unchanged when it has no request stages)."""
    pipeline = build_pipeline(route.name, route.pipeline, dead_letters=False, metrics=metrics,
                              limits=route.pipeline_limits)
    pipeline_pools(metrics).attach(route, pipeline, dead_letters=False)
    return PipelineLayer(pipeline, handler) if pipeline else handler


def build_ingest(route: Route, send: Send | None, metrics: Registry, previous: Mapping[str, IngestRoute],
                 same_cluster: bool) -> IngestRoute:
    old = previous.get(route.name)
    if old is not None and old.route == route and same_cluster and not old.closed:
        pipeline_pools(metrics).keep(old.pipeline)
        return old
    pipeline = build_pipeline(route.name, route.pipeline, dead_letters=True, metrics=metrics,
                              limits=route.pipeline_limits)
    pipeline_pools(metrics).attach(route, pipeline, dead_letters=True)
    return IngestRoute(route, send=wrap_send(route, send) if send is not None else None,
                       pipeline=pipeline or None, metrics=metrics)


async def start_ingest(new: Mapping[str, IngestRoute], old: Mapping[str, IngestRoute] | None = None) -> None:
    """Open the logs of the routes `old` does not have (raises LogError, an OSError, when one cannot open)."""
    running = {id(r) for r in old.values()} if old is not None else set()
    for route in new.values():
        if id(route) not in running:
            await route.start()


async def stop_ingest(old: Mapping[str, IngestRoute], new: Mapping[str, IngestRoute] | None,
                      timeout: float) -> None:
    """Drain the routes of `old` that `new` does not keep."""
    kept = {id(r) for r in new.values()} if new is not None else set()
    drains = [r.drain(timeout) for r in old.values() if id(r) not in kept]
    if drains:
        await asyncio.gather(*drains, return_exceptions=True)


def commit_pipelines(metrics: Registry, applied: bool) -> None:
    """After a snapshot was built: it went live (`applied`: its pipelines' workers start, replaced ones stop
    once their queues are done) or it was abandoned (the workers only it asked for stop)."""
    pools = pipeline_pools(metrics)
    if applied:
        pools.commit()
    else:
        pools.rollback()


async def stop_pipelines(metrics: Registry, timeout: float) -> None:
    """Drain: the pipelines' workers finish what is queued, then stop."""
    await pipeline_pools(metrics).stop(timeout)


def summaries(routes: Mapping[str, IngestRoute]) -> dict[str, Any]:
    return {name: route.summary() for name, route in routes.items()}


__all__ = ["build_ingest", "commit_pipelines", "start_ingest", "stop_ingest", "stop_pipelines", "summaries",
           "with_pipeline", "wrap_send"]
