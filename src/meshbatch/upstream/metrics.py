"""Per-endpoint upstream metrics, read from the live clusters at scrape time (a `Registry` source: a reload
replaces the clusters, never duplicates a series)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from meshbatch.telemetry.metrics import Counter, Gauge, Metric
from meshbatch.upstream.cluster import Cluster

Series = list[tuple[tuple[str, ...], float]]


def upstream_metrics(clusters: Iterable[Cluster]) -> Iterator[Metric]:
    healthy: Series = []
    active: Series = []
    latency: Series = []
    state: Series = []
    ejections = Counter("meshbatch_upstream_endpoint_ejections_total",
                        "Outlier ejections of an endpoint.", ["cluster", "endpoint"])
    discovery = Counter("meshbatch_discovery_updates_total",
                        "Endpoint sets learnt from a cluster's discovery source, and failures to learn one.",
                        ["cluster", "result"])
    for cluster in clusters:
        name = cluster.name
        for ep in cluster.hosts.all:
            labels = (name, ep.address)
            healthy.append((labels, 0.0 if ep.down else 1.0))
            active.append((labels, ep.active))
            latency.append((labels, ep.rtt))
            ejections.values[labels] = ep.ejections
            state.append(((name, ep.address, ep.state()), 1.0))
        source = cluster.source.summary()
        if "updates" in source:
            discovery.values[(name, "ok")] = float(source["updates"])  # type: ignore[arg-type]
            discovery.values[(name, "failed")] = float(source.get("failures", 0))  # type: ignore[arg-type]
    yield Gauge("meshbatch_upstream_endpoint_healthy", "1 when the endpoint takes traffic (not failing active "
                "health checks, not ejected).", ["cluster", "endpoint"], lambda: healthy)
    yield Gauge("meshbatch_upstream_endpoint_state", "The endpoint's health state (healthy, unhealthy, ejected).",
                ["cluster", "endpoint", "state"], lambda: state)
    yield Gauge("meshbatch_upstream_endpoint_active_requests", "Requests in flight to the endpoint.",
                ["cluster", "endpoint"], lambda: active)
    yield Gauge("meshbatch_upstream_endpoint_latency_ewma_seconds", "Peak-EWMA of the endpoint's round trips.",
                ["cluster", "endpoint"], lambda: latency)
    yield ejections
    yield discovery


__all__ = ["upstream_metrics"]
