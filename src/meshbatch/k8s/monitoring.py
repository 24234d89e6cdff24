"""A Prometheus operator scrape of the admin listener's /metrics: a ServiceMonitor (through the Service, which
then carries the admin port) or a PodMonitor (straight to the pods' `admin` port). Both are
monitoring.coreos.com/v1 objects; the operator picks them up by its own selectors (often a `release` label,
which `kubectl label` adds)."""

from __future__ import annotations

from meshbatch.k8s.options import Manifest, RenderOptions


def monitor(options: RenderOptions) -> Manifest | None:
    if options.monitor is None:
        return None
    endpoint = {"port": "admin", "path": "/metrics", "interval": options.monitor_interval, "scheme": "http"}
    if options.monitor == "servicemonitor":
        spec: dict[str, object] = {"selector": {"matchLabels": options.selector}, "endpoints": [endpoint]}
        kind = "ServiceMonitor"
    else:
        spec = {"selector": {"matchLabels": options.selector}, "podMetricsEndpoints": [endpoint]}
        kind = "PodMonitor"
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": kind, "metadata": options.metadata(options.name),
            "spec": spec}


__all__ = ["monitor"]
