"""The workload that runs `meshbatch run` (and its PodDisruptionBudget): a Deployment, or a StatefulSet when the
config keeps state in the pod (a SQLite ingest log or sink), with a PersistentVolumeClaim per replica mounted
as the data volume, so that each replica finds its own log again after a restart or a reschedule.

Probes: readiness is GET /ready on the admin port (503 while draining, so the pod leaves the Service's
endpoints first); liveness is GET /listeners (answered while draining too, so a drain is never killed);
a startup probe gives discovery its first endpoint sets before liveness counts. On deletion the kubelet runs
the preStop pause (callers' proxies and kube-proxy learn that the pod is leaving), then sends SIGTERM, and
meshbatch drains for `drain_timeout_ms`; the grace period covers both. The container runs as a non-root
user with a read-only root filesystem and no capabilities; /tmp and /var/lib/meshbatch are writable volumes.
The ConfigMap is mounted at /etc/meshbatch (the config and the files it reads), the Secret's files at
/etc/meshbatch-secrets, and its values are the environment variables the config names.
"""

from __future__ import annotations

import math

from meshbatch.config import Config
from meshbatch.k8s.configmap import config_map_name, digest, secret_name
from meshbatch.k8s.options import Manifest, RenderOptions
from meshbatch.k8s.pack import CONFIG_DIR, DATA_DIR, SECRET_DIR, Packed
from meshbatch.k8s.ports import Port

UID = 10001  # the image's `meshbatch` user


def _env(options: RenderOptions, packed: Packed) -> dict[str, object]:
    out: dict[str, object] = {}
    if packed.secret_env:
        out["env"] = [{"name": name, "valueFrom": {"secretKeyRef": {"name": secret_name(options), "key": name}}}
                      for name in sorted(packed.secret_env)]
    if options.env_from:
        out["envFrom"] = [{"secretRef": {"name": name}} for name in options.env_from]
    return out


def _mounts(packed: Packed) -> list[dict[str, object]]:
    mounts: list[dict[str, object]] = [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True}]
    if packed.secret_files:
        mounts.append({"name": "secrets", "mountPath": SECRET_DIR, "readOnly": True})
    return [*mounts, {"name": "tmp", "mountPath": "/tmp"}, {"name": "data", "mountPath": DATA_DIR}]


def _volumes(options: RenderOptions, packed: Packed, claims: bool) -> list[dict[str, object]]:
    volumes: list[dict[str, object]] = [{"name": "config", "configMap": {"name": config_map_name(options)}}]
    if packed.secret_files:
        volumes.append({"name": "secrets", "secret": {
            # owner root, group the pod's fsGroup (the proxy's): readable by the proxy, by nobody else
            "secretName": secret_name(options), "defaultMode": 0o440,
            "items": [{"key": key, "path": key} for key in sorted(packed.secret_files)]}})
    volumes.append({"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}})
    if not claims:
        volumes.append({"name": "data", "emptyDir": {"sizeLimit": options.storage_size}})
    return volumes


def _container(options: RenderOptions, ports: list[Port], admin: Port, packed: Packed) -> dict[str, object]:
    def probe(path: str, period: int, failures: int) -> dict[str, object]:
        return {"httpGet": {"path": path, "port": admin.name}, "periodSeconds": period, "timeoutSeconds": 2,
                "failureThreshold": failures}

    return {
        "name": "meshbatch",
        "image": options.image,
        "imagePullPolicy": "IfNotPresent",
        "args": ["run", "--config", f"{CONFIG_DIR}/{options.config_file}"],
        **_env(options, packed),
        "ports": [{"name": p.name, "containerPort": p.number, "protocol": "TCP"} for p in [*ports, admin]],
        "startupProbe": probe("/ready", 1, 60),
        "readinessProbe": probe("/ready", 5, 2),
        "livenessProbe": probe("/listeners", 10, 3),
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(options.pre_stop_seconds)]}}},
        "resources": {"requests": dict(options.requests), "limits": dict(options.limits)},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": _mounts(packed),
    }


def uses_claims(options: RenderOptions, packed: Packed) -> bool:
    """A PVC per replica (a StatefulSet): the config keeps state in the pod, and the user did not opt out."""
    return bool(packed.state) and options.volume_claims


def workload(config: Config, options: RenderOptions, packed: Packed, ports: list[Port], admin: Port,
             api_access: bool) -> Manifest:
    """A Deployment, or a StatefulSet with a PVC per replica for a config that keeps state in the pod."""
    claims = uses_claims(options, packed)
    grace = options.pre_stop_seconds + math.ceil(config.drain_timeout_ms / 1000) + 5
    annotations = {"meshbatch.dev/config-digest": digest(packed), "prometheus.io/scrape": "true",
                   "prometheus.io/port": str(admin.number), "prometheus.io/path": "/metrics"}
    spread = [{"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "ScheduleAnyway",
               "labelSelector": {"matchLabels": options.selector}}
              for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")]
    template = {
        "metadata": {"labels": dict(options.labels), "annotations": annotations},
        "spec": {
            "serviceAccountName": options.name,
            "automountServiceAccountToken": api_access,
            "terminationGracePeriodSeconds": grace,
            "securityContext": {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "topologySpreadConstraints": spread,
            "containers": [_container(options, ports, admin, packed)],
            "volumes": _volumes(options, packed, claims),
        },
    }
    replicas = {} if options.hpa_max is not None else {"replicas": options.replicas}  # the HPA owns the count
    if not claims:
        return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": options.metadata(options.name),
                "spec": {**replicas, "selector": {"matchLabels": options.selector},
                         "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                         "template": template}}
    claim_spec: dict[str, object] = {"accessModes": ["ReadWriteOnce"],
                                     "resources": {"requests": {"storage": options.storage_size}}}
    if options.storage_class:
        claim_spec["storageClassName"] = options.storage_class
    return {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": options.metadata(options.name),
        "spec": {
            **replicas, "serviceName": options.name, "selector": {"matchLabels": options.selector},
            "podManagementPolicy": "Parallel",  # replicas are peers: start and stop them together
            "updateStrategy": {"type": "RollingUpdate"},
            # a replica's claim outlives the replica: events still in its log are delivered when it comes back
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
            "template": template,
            # a StatefulSet's claim templates cannot change: only labels that stay (no version) go on them
            "volumeClaimTemplates": [{"metadata": {"name": "data", "labels": {
                k: v for k, v in options.labels.items() if k != "app.kubernetes.io/version"}},
                                      "spec": claim_spec}],
        },
    }


def disruption_budget(options: RenderOptions) -> Manifest:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": options.metadata(options.name),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": options.selector}}}


__all__ = ["UID", "disruption_budget", "uses_claims", "workload"]
