"""What a user chooses when rendering: names, namespace, replicas, image, resources, storage, scaling,
monitoring, mesh routing, and the labels every object carries."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from meshbatch import __version__

DEFAULT_IMAGE = f"ghcr.io/meshbatch/meshbatch:{__version__}"
Manifest = dict[str, object]
Monitor = Literal["servicemonitor", "podmonitor"]
MeshApi = Literal["gateway", "istio", "both"]


_LABEL_INVALID = re.compile(r"[^-A-Za-z0-9_.]+")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")


def label_value(text: str) -> str:
    """`text` as a label value: at most 63 characters of [-A-Za-z0-9_.], alphanumeric at both ends."""
    return _LABEL_INVALID.sub("-", text)[:63].strip("-_.")


@dataclass(frozen=True, slots=True)
class RenderOptions:
    name: str = "meshbatch"  # the Deployment or StatefulSet, Service, ServiceAccount and `app` label
    namespace: str | None = None  # None: no namespace in the manifests (kubectl's current one)
    replicas: int = 2
    image: str = DEFAULT_IMAGE
    config_file: str = "meshbatch.yaml"  # the key in the ConfigMap, mounted under /etc/meshbatch/
    requests: dict[str, str] = field(default_factory=lambda: {"cpu": "250m", "memory": "128Mi"})
    limits: dict[str, str] = field(default_factory=lambda: {"cpu": "1", "memory": "512Mi"})
    pre_stop_seconds: int = 5  # callers learn that the pod is leaving before it stops accepting
    # storage for what must outlive a pod (a SQLite ingest log or sink): a PVC per replica, or, with
    # `volume_claims=False`, an emptyDir (a single replica only: meshbatch.k8s.render refuses more)
    volume_claims: bool = True
    storage_size: str = "1Gi"
    storage_class: str | None = None
    pod_paths: tuple[str, ...] = ()  # absolute paths the pod already has (volumes of the user's): not shipped
    env_from: tuple[str, ...] = ()  # Secrets whose keys become environment variables (`${NAME}` in the config)
    hpa_max: int | None = None  # a HorizontalPodAutoscaler from `replicas` to this many
    hpa_cpu: int = 70  # its target: average CPU utilisation, percent of the request
    monitor: Monitor | None = None  # a Prometheus operator ServiceMonitor or PodMonitor for /metrics
    monitor_interval: str = "15s"
    admin_on_service: bool = False  # the admin port on the Service too (a ServiceMonitor needs it)
    route_service: str | None = None  # SERVICE[:PORT]: send the callers of this Service through the proxy
    mesh_api: MeshApi = "gateway"  # how: a Gateway API HTTPRoute (GAMMA), an Istio VirtualService, or both
    part_of: str | None = None  # app.kubernetes.io/part-of (default: the name)
    managed_by: str = "meshbatch"  # app.kubernetes.io/managed-by

    @property
    def version(self) -> str:
        """app.kubernetes.io/version: the image's tag (the package's version for an image named by digest)."""
        tail = self.image.rsplit("/", 1)[-1]
        tag = tail.rsplit(":", 1)[1] if "@" not in tail and ":" in tail else __version__
        return label_value(tag) or label_value(__version__)

    @property
    def selector(self) -> dict[str, str]:
        """The labels that pick the pods: stable across versions (a selector cannot change after creation)."""
        return {"app": self.name}

    @property
    def labels(self) -> dict[str, str]:
        return {"app": self.name, "app.kubernetes.io/name": "meshbatch", "app.kubernetes.io/instance": self.name,
                "app.kubernetes.io/component": "proxy", "app.kubernetes.io/version": self.version,
                "app.kubernetes.io/part-of": self.part_of or self.name,
                "app.kubernetes.io/managed-by": self.managed_by}

    def metadata(self, name: str, namespace: str | None = None) -> dict[str, object]:
        namespace = namespace or self.namespace
        where = {"namespace": namespace} if namespace else {}
        return {"name": name, **where, "labels": dict(self.labels)}


__all__ = ["DEFAULT_IMAGE", "LABEL_VALUE", "Manifest", "MeshApi", "Monitor", "RenderOptions", "label_value"]
