"""How the runtime builds, starts and retires ingest routes (called from `runtime.snapshot`/`app`).

On reload an ingest route whose config (and cluster) did not change is carried over as it is; a changed one is
drained (deliveries in flight finish, pending commits are written, its log file is released) before its
successor opens the same log and recovers what is left in it.

An ingest route's pipeline gets its worker processes as a batch route's does (runtime/pipelines.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported by the first config with an ingest route (build_ingest), never by a plain proxy
    from meshbatch.config.plain import IngestRoute as IngestConfig
    from meshbatch.ingest.route import IngestRoute
    from meshbatch.pipeline.stages.compress import Send
    from meshbatch.telemetry.metrics import Registry


def build_ingest(route: IngestConfig, send: Send | None, metrics: Registry, previous: Mapping[str, IngestRoute],
                 same_cluster: bool) -> IngestRoute:
    from meshbatch.ingest.route import IngestRoute
    from meshbatch.pipeline import build_pipeline
    from meshbatch.pipeline.pools import pipeline_pools
    from meshbatch.runtime.pipelines import wrap_send

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


__all__ = ["build_ingest", "start_ingest", "stop_ingest"]
