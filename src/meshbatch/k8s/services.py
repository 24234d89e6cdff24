"""The Service in front of the pods: one port per listener, and the admin port when asked (`--admin-port`, or a
ServiceMonitor, which scrapes through a Service); otherwise probes and metrics scrapes reach the pods directly.
`appProtocol: http` tells Istio (and other meshes) the protocol, so the sidecar parses HTTP instead of treating
the port as opaque TCP; mTLS listeners are left opaque."""

from __future__ import annotations

from meshbatch.k8s.options import Manifest, RenderOptions
from meshbatch.k8s.ports import Port


def admin_on_service(options: RenderOptions) -> bool:
    return options.admin_on_service or options.monitor == "servicemonitor"


def service(options: RenderOptions, ports: list[Port], admin: Port) -> Manifest:
    entries: list[dict[str, object]] = []
    for port in [*ports, admin] if admin_on_service(options) else ports:
        entry: dict[str, object] = {"name": port.name, "port": port.number, "targetPort": port.name,
                                    "protocol": "TCP"}
        if not port.tls:
            entry["appProtocol"] = "http"
        entries.append(entry)
    return {"apiVersion": "v1", "kind": "Service", "metadata": options.metadata(options.name),
            "spec": {"type": "ClusterIP", "selector": options.selector, "ports": entries}}


__all__ = ["admin_on_service", "service"]
