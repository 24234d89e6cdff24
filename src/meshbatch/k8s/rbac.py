"""The workload's ServiceAccount, and read access to EndpointSlices where `kubernetes` discovery looks.

One Role and RoleBinding per namespace that a cluster's discovery watches (its `namespace`, else the pod's),
granting get/list/watch on discovery.k8s.io endpointslices and nothing else. Without `--namespace` the
manifests name no namespace (they go where `kubectl apply` puts them) and the binding's subject is the
service account of the binding's own namespace; a discovery in another namespace then needs `--namespace`.
Without `kubernetes` discovery the pod gets no API token at all (automountServiceAccountToken: false).
Sources with their own `kubeconfig` use that file's credentials, not the pod's.
"""

from __future__ import annotations

from meshbatch.config import Config, Problem
from meshbatch.k8s.options import Manifest, RenderOptions


def watched_namespaces(config: Config, options: RenderOptions) -> tuple[list[str | None], list[Problem]]:
    """The namespaces to grant (None: the pod's own), and discoveries that need `--namespace`."""
    found: list[str | None] = []
    problems: list[Problem] = []
    for i, cluster in enumerate(config.clusters):
        discovery = cluster.discovery
        if discovery is None or discovery.type != "kubernetes" or discovery.kubeconfig is not None:
            continue
        namespace = discovery.namespace or options.namespace
        if namespace is not None and options.namespace is None:
            problems.append(Problem(f"clusters[{i}].discovery.namespace",
                                    f"{namespace!r}: granting access to another namespace needs --namespace "
                                    "(the namespace the proxy runs in)"))
        if namespace == options.namespace:
            namespace = None if options.namespace is None else namespace
        if namespace not in found:
            found.append(namespace)
    return found, problems


def service_account(options: RenderOptions, api_access: bool) -> Manifest:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": options.metadata(options.name),
            "automountServiceAccountToken": api_access}


def endpoint_slice_reader(options: RenderOptions, namespace: str | None) -> list[Manifest]:
    name = f"{options.name}-endpointslices"
    metadata = options.metadata(name, namespace)
    subject: dict[str, object] = {"kind": "ServiceAccount", "name": options.name}
    if options.namespace:
        subject["namespace"] = options.namespace
    role: Manifest = {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": metadata,
        "rules": [{"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
                   "verbs": ["get", "list", "watch"]}],
    }
    binding: Manifest = {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": dict(metadata),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [subject],
    }
    return [role, binding]


def rbac(config: Config, options: RenderOptions) -> list[Manifest]:
    namespaces, _ = watched_namespaces(config, options)
    out = [service_account(options, bool(namespaces))]
    for namespace in namespaces:
        out += endpoint_slice_reader(options, namespace)
    return out


__all__ = ["endpoint_slice_reader", "rbac", "service_account", "watched_namespaces"]
