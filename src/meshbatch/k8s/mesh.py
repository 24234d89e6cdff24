"""Mesh routing (`--route-service SERVICE[:PORT]`): the callers of SERVICE reach the proxy instead, unchanged.

- `gateway` (the default): a Gateway API HTTPRoute whose parent is the Service itself (GAMMA, the Gateway API
  for service meshes: Istio, Linkerd, Cilium and others implement it). Every mesh client's request to SERVICE
  goes to the proxy's Service on its first plain listener's port. A GAMMA route cannot tell the proxy's own
  requests apart, so the proxy must reach the service's pods some other way than by SERVICE's name: a headless
  Service (`consumer-headless` in the walk-through) found by `dns` or `kubernetes` discovery; a config whose
  cluster names SERVICE itself would send its batches back to itself, and is refused.
- `istio`: a VirtualService on SERVICE's host with two rules: requests from the proxy's pods (`sourceLabels`) go
  to SERVICE as before, every other one to the proxy.
- `both`: the two (a mesh that reads either).
"""

from __future__ import annotations

from meshbatch.config import Config, Problem
from meshbatch.k8s.options import Manifest, RenderOptions
from meshbatch.k8s.ports import Port


def parse_target(value: str) -> tuple[str, int | None]:
    """`SERVICE[:PORT]` -> (service, port); ValueError with the reason."""
    from meshbatch.discovery.kubernetes import DNS_LABEL

    name, colon, port = value.partition(":")
    if not name or len(name) > 63 or not DNS_LABEL.match(name):
        raise ValueError(f"{name!r} is not a Service name (a DNS label)")
    if not colon:
        return name, None
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{port!r} is not a port (1-65535)")
    return name, int(port)


def _names_service(host: str, service: str) -> bool:
    host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return host == service or host.startswith(f"{service}.")


def loop_problems(config: Config, service: str) -> list[Problem]:
    """Clusters that reach SERVICE by its name: with a GAMMA route on it, their requests would come back."""
    out = []
    for i, cluster in enumerate(config.clusters):
        discovery = cluster.discovery
        hosts = [e if isinstance(e, str) else e.address for e in cluster.endpoints]
        named = any(_names_service(h, service) for h in hosts)
        if discovery is not None and discovery.type == "dns" and discovery.name:
            named = named or _names_service(discovery.name.lstrip("_").split("._tcp.")[-1], service)
        if discovery is not None and discovery.type == "kubernetes":
            named = named or discovery.service == service
        if named:
            out.append(Problem(f"clusters[{i}]", f"reaches {service!r} by its name: the HTTPRoute on {service!r} "
                                                 "would send the proxy's own requests back to the proxy; discover "
                                                 "its pods through a headless Service instead (or --mesh-api istio)"))
    return out


def target_port(ports: list[Port]) -> Port | None:
    return next((p for p in ports if not p.tls), None)


def http_route(options: RenderOptions, service: str, port: int | None, backend: Port) -> Manifest:
    parent: dict[str, object] = {"group": "", "kind": "Service", "name": service}
    if port is not None:
        parent["port"] = port
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": options.metadata(f"{service}-via-{options.name}"),
            "spec": {"parentRefs": [parent],
                     "rules": [{"backendRefs": [{"group": "", "kind": "Service", "name": options.name,
                                                 "port": backend.number}]}]}}


def virtual_service(options: RenderOptions, service: str, port: int | None, backend: Port) -> Manifest:
    direct: dict[str, object] = {"host": service}
    if port is not None:
        direct["port"] = {"number": port}
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": options.metadata(f"{service}-via-{options.name}"),
            "spec": {"hosts": [service], "exportTo": ["."], "http": [
                {"name": "from-the-proxy", "match": [{"sourceLabels": options.selector}],
                 "route": [{"destination": direct}]},
                {"name": "through-the-proxy",
                 "route": [{"destination": {"host": options.name, "port": {"number": backend.number}}}]},
            ]}}


def mesh_routes(config: Config, options: RenderOptions, ports: list[Port]) -> tuple[list[Manifest], list[Problem]]:
    if options.route_service is None:
        return [], []
    try:
        service, port = parse_target(options.route_service)
    except ValueError as exc:
        return [], [Problem("--route-service", str(exc))]
    if service == options.name:
        return [], [Problem("--route-service", f"{service!r} is the proxy's own Service")]
    backend = target_port(ports)
    if backend is None:
        return [], [Problem("--route-service", "the proxy has no plaintext listener to send the Service's callers "
                                               "to (the mesh encrypts the hop itself)")]
    out: list[Manifest] = []
    problems: list[Problem] = []
    if options.mesh_api in ("gateway", "both"):
        problems += loop_problems(config, service)
        out.append(http_route(options, service, port, backend))
    if options.mesh_api in ("istio", "both"):
        out.append(virtual_service(options, service, port, backend))
    return out, problems


__all__ = ["http_route", "loop_problems", "mesh_routes", "parse_target", "virtual_service"]
