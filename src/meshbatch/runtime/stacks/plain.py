"""The stack of a plain route: every stage a proxied request crosses, outermost first.

    checks   the route's policies (403), its rate limits (429)                     answered here, nothing awaits
    deadline the route's timeout, or the caller's x-meshbatch-deadline-ms (504 when already spent)
    fault    injected delays and aborts (docs/traffic.md)
    concurrency  the adaptive concurrency limit (503 beyond it)
    mirror   a copy to the shadow cluster, never waited for
    split    the weighted cluster (canary) this request goes to; its retries stay there
    retry    failures retried on another endpoint, within the retry budget and the deadline
    upstream one attempt: pick, admit, account, send, observe (upstream/exchange.py)

A route with none of fault, concurrency, mirror, split and retry has a fast path: the upstream attempt over an
idle keep-alive connection, driven by callbacks (no task), with the same headers, errors and accounting.
"""

from __future__ import annotations

from meshbatch.config import plain
from meshbatch.layers.call import UpstreamService
from meshbatch.layers.mirror import MirrorLayer
from meshbatch.layers.retry import RetryLayer
from meshbatch.layers.split import SplitLayer
from meshbatch.layers.timeout import DeadlineLayer
from meshbatch.runtime.stacks.parts import Parts
from meshbatch.service import RouteStack, Service


def plain_stack(listener: plain.Listener, route: plain.PlainRoute, parts: Parts) -> RouteStack:
    checks = [*parts.policies(listener, route), *parts.request_limits(route)]
    timeout = route.timeout_ms / 1000
    per_try = route.per_try_timeout_ms / 1000 if route.per_try_timeout_ms else None
    split = parts.split(route)
    upstream = UpstreamService(split.targets[0], timeout, per_try, listener.via, parts.loop,
                               stream_limit=listener.limits.max_buffer_bytes)
    service: Service = upstream
    policy = parts.retry_policy(route)
    if policy is not None:
        service = RetryLayer(service, policy, split.targets[0], timeout, parts.loop)
    if len(split.targets) > 1:
        service = SplitLayer(service, split, route.name, parts.metrics)
    mirror = parts.mirror(route)
    if mirror is not None:
        service = MirrorLayer(service, mirror, listener.via)
    layered = service is not upstream or route.fault is not None or route.adaptive_concurrency is not None
    service = DeadlineLayer(parts.front(route, service), timeout, parts.loop)
    # A body still arriving goes upstream as it comes, but for a mirror's copy (which needs it whole)
    return RouteStack(route.name, "plain", tuple(checks), service, None if layered else upstream.fast,
                      streams=mirror is None)


__all__ = ["plain_stack"]
