"""The stack of an ingest route: every stage an event crosses, outermost first.

    checks     the route's policies (403), its rate limits (429)                   answered here, nothing awaits
    fault      injected delays and aborts
    concurrency  the adaptive concurrency limit
    accept     the pipeline (one request may carry many events), the durable log, the answer at the route's
               acknowledgement level (202 accepted / delivered): ingest/handler.py

Later, and apart from any caller: the flusher takes ready events from the log in batches and delivers them to the
sink: a database in one transaction per batch, or the route's cluster through the same sender and upstream
exchange as a batching route's batches (ingest/flusher.py, ingest/sinks/).
"""

from __future__ import annotations

from meshbatch.config import plain
from meshbatch.ingest.route import IngestRoute
from meshbatch.runtime.stacks.parts import Parts
from meshbatch.service import RouteStack


def ingest_stack(listener: plain.Listener, route: plain.IngestRoute, parts: Parts, ingest: IngestRoute) -> RouteStack:
    checks = [*parts.policies(listener, route), *parts.request_limits(route)]
    return RouteStack(route.name, "ingest", tuple(checks), parts.front(route, ingest.handler))


__all__ = ["ingest_stack"]
