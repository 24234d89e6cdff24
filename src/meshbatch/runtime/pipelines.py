"""A route's pipeline in the running proxy: in front of a batch route's batcher, compressing the batches of batch
and ingest routes alike, and the worker processes of every pipeline.

A pipeline gets its route's worker processes here (`meshbatch.pipeline.pools`: the same pool as before when the
route's pipeline did not change); the proxy starts and stops them with its snapshots (`commit_pipelines`,
`stop_pipelines`). An ingest route's pipeline is built with its route (runtime/ingest.py), where it may also
dead-letter events.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # meshbatch.pipeline is imported by the first route with a pipeline, never by a plain proxy
    from meshbatch.config.plain import PipelineRoute
    from meshbatch.pipeline.stages.compress import Send
    from meshbatch.service import Service
    from meshbatch.telemetry.metrics import Registry

POOLS = "meshbatch.pipeline.pools"  # not imported yet: no route ever had a pipeline, so there are no pools


def wrap_send(route: PipelineRoute, send: Send) -> Send:
    """The route's batch sender, compressing bodies when its pipeline has a `compress` step."""
    from meshbatch.pipeline.stages.compress import CompressingSender

    for step in route.pipeline:
        if step.compress is not None:
            return CompressingSender(send, step.compress)
    return send


def with_pipeline(route: PipelineRoute, handler: Service, metrics: Registry) -> Service:
    """A batching route's handler behind its pipeline (unchanged when it has no request stages)."""
    from meshbatch.pipeline import PipelineLayer, build_pipeline
    from meshbatch.pipeline.pools import pipeline_pools

    pipeline = build_pipeline(route.name, route.pipeline, dead_letters=False, metrics=metrics,
                              limits=route.pipeline_limits)
    pipeline_pools(metrics).attach(route, pipeline, dead_letters=False)
    return PipelineLayer(pipeline, handler) if pipeline else handler


def commit_pipelines(metrics: Registry, applied: bool) -> None:
    """After a snapshot was built: it went live (`applied`: its pipelines' workers start, replaced ones stop
    once their queues are done) or it was abandoned (the workers only it asked for stop)."""
    if POOLS not in sys.modules:
        return
    from meshbatch.pipeline.pools import pipeline_pools

    pools = pipeline_pools(metrics)
    if applied:
        pools.commit()
    else:
        pools.rollback()


async def stop_pipelines(metrics: Registry, timeout: float) -> None:
    """Drain: the pipelines' workers finish what is queued, then stop."""
    if POOLS not in sys.modules:
        return
    from meshbatch.pipeline.pools import pipeline_pools

    await pipeline_pools(metrics).stop(timeout)


__all__ = ["commit_pipelines", "stop_pipelines", "with_pipeline", "wrap_send"]
