"""What a user chooses when rendering: names, namespace, replicas, image, resources."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_IMAGE = "ghcr.io/meshbatch/meshbatch:0.1.0"
Manifest = dict[str, object]


@dataclass(frozen=True, slots=True)
class RenderOptions:
    name: str = "meshbatch"  # the Deployment, Service, ServiceAccount and `app` label
    namespace: str | None = None  # None: no namespace in the manifests (kubectl's current one)
    replicas: int = 2
    image: str = DEFAULT_IMAGE
    config_file: str = "meshbatch.yaml"  # the key in the ConfigMap, mounted under /etc/meshbatch/
    requests: dict[str, str] = field(default_factory=lambda: {"cpu": "250m", "memory": "128Mi"})
    limits: dict[str, str] = field(default_factory=lambda: {"cpu": "1", "memory": "512Mi"})
    pre_stop_seconds: int = 5  # callers learn that the pod is leaving before it stops accepting

    @property
    def labels(self) -> dict[str, str]:
        return {"app": self.name, "app.kubernetes.io/name": "meshbatch", "app.kubernetes.io/instance": self.name,
                "app.kubernetes.io/component": "proxy"}

    def metadata(self, name: str, namespace: str | None = None) -> dict[str, object]:
        namespace = namespace or self.namespace
        where = {"namespace": namespace} if namespace else {}
        return {"name": name, **where, "labels": dict(self.labels)}


__all__ = ["DEFAULT_IMAGE", "Manifest", "RenderOptions"]
