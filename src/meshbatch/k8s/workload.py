"""The Deployment that runs `meshbatch run` (and its PodDisruptionBudget).

Probes: readiness is GET /ready on the admin port (503 while draining, so the pod leaves the Service's
endpoints first); liveness is GET /listeners (answered while draining too, so a drain is never killed);
a startup probe gives discovery its first endpoint sets before liveness counts. On deletion the kubelet runs
the preStop pause (callers' proxies and kube-proxy learn that the pod is leaving), then sends SIGTERM, and
meshbatch drains for `drain_timeout_ms`; the grace period covers both. The container runs as a non-root
user with a read-only root filesystem and no capabilities; /tmp and /var/lib/meshbatch are writable volumes.
"""

from __future__ import annotations

import math

from meshbatch.config import Config
from meshbatch.k8s.configmap import config_map_name, digest
from meshbatch.k8s.options import Manifest, RenderOptions
from meshbatch.k8s.ports import Port

CONFIG_DIR = "/etc/meshbatch"
UID = 10001  # the image's `meshbatch` user


def _container(options: RenderOptions, ports: list[Port], admin: Port) -> dict[str, object]:
    def probe(path: str, period: int, failures: int) -> dict[str, object]:
        return {"httpGet": {"path": path, "port": admin.name}, "periodSeconds": period, "timeoutSeconds": 2,
                "failureThreshold": failures}

    return {
        "name": "meshbatch",
        "image": options.image,
        "imagePullPolicy": "IfNotPresent",
        "args": ["run", "--config", f"{CONFIG_DIR}/{options.config_file}"],
        "ports": [{"name": p.name, "containerPort": p.number, "protocol": "TCP"} for p in [*ports, admin]],
        "startupProbe": probe("/ready", 1, 60),
        "readinessProbe": probe("/ready", 5, 2),
        "livenessProbe": probe("/listeners", 10, 3),
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(options.pre_stop_seconds)]}}},
        "resources": {"requests": dict(options.requests), "limits": dict(options.limits)},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                         {"name": "tmp", "mountPath": "/tmp"},
                         {"name": "data", "mountPath": "/var/lib/meshbatch"}],
    }


def deployment(config: Config, options: RenderOptions, text: str, ports: list[Port], admin: Port,
               api_access: bool) -> Manifest:
    grace = options.pre_stop_seconds + math.ceil(config.drain_timeout_ms / 1000) + 5
    annotations = {"meshbatch.dev/config-digest": digest(text), "prometheus.io/scrape": "true",
                   "prometheus.io/port": str(admin.number), "prometheus.io/path": "/metrics"}
    spread = [{"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "ScheduleAnyway",
               "labelSelector": {"matchLabels": {"app": options.name}}}
              for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")]
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": options.metadata(options.name),
        "spec": {
            "replicas": options.replicas,
            "selector": {"matchLabels": {"app": options.name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": dict(options.labels), "annotations": annotations},
                "spec": {
                    "serviceAccountName": options.name,
                    "automountServiceAccountToken": api_access,
                    "terminationGracePeriodSeconds": grace,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "topologySpreadConstraints": spread,
                    "containers": [_container(options, ports, admin)],
                    "volumes": [{"name": "config", "configMap": {"name": config_map_name(options)}},
                                {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
                                {"name": "data", "emptyDir": {"sizeLimit": "1Gi"}}],
                },
            },
        },
    }


def disruption_budget(options: RenderOptions) -> Manifest:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": options.metadata(options.name),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": options.name}}}}


__all__ = ["CONFIG_DIR", "UID", "deployment", "disruption_budget"]
