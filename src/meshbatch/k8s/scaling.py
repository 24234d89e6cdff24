"""The HorizontalPodAutoscaler (`--hpa-max N`): from `--replicas` to N pods on average CPU utilisation.

Scaling down is slow on purpose (five minutes of lower load): a proxy that leaves drains its callers and its
batches, and a batcher fed by fewer pods makes bigger batches, so a short dip is no reason to leave. Only a
Deployment is scaled: a StatefulSet's replicas hold durable logs, and scaling one down would strand the events
of the replica that left (meshbatch.k8s.render refuses the combination)."""

from __future__ import annotations

from meshbatch.k8s.options import Manifest, RenderOptions


def autoscaler(options: RenderOptions, kind: str) -> Manifest | None:
    if options.hpa_max is None:
        return None
    return {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": options.metadata(options.name),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": kind, "name": options.name},
            "minReplicas": max(options.replicas, 1),
            "maxReplicas": options.hpa_max,
            "metrics": [{"type": "Resource", "resource": {
                "name": "cpu", "target": {"type": "Utilization", "averageUtilization": options.hpa_cpu}}}],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300,
                                       "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]}},
        },
    }


__all__ = ["autoscaler"]
