"""`meshbatch k8s render` as a function: the objects, the problems that stop it (with paths), strict validity."""

from __future__ import annotations

from typing import Any

import pytest

from meshbatch.k8s.options import RenderOptions
from meshbatch.k8s.ports import port_name
from meshbatch.k8s.render import RenderError, render
from testbed.k8s_validate import validate_all

CONFIG = """\
admin: {listen: 0.0.0.0:9901}
drain_timeout_ms: 12000
listeners:
  - name: Public Ingress
    listen: 0.0.0.0:8080
    routes: [{name: all, cluster: web}]
  - name: internal
    listen: "[::]:8443"
    routes: [{name: other, cluster: static}]
clusters:
  - name: web
    discovery: {type: kubernetes, service: web, port_name: http}
  - name: static
    endpoints: [10.0.0.1:80]
"""


def by_kind(docs: list[Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        out.setdefault(doc["kind"], []).append(doc)
    return out


def test_the_objects_for_a_config_with_kubernetes_discovery() -> None:
    docs = render(CONFIG, RenderOptions(name="edge", namespace="shop", replicas=3, image="reg/mb:1"))
    kinds = by_kind(docs)
    assert [d["kind"] for d in docs] == ["ConfigMap", "ServiceAccount", "Role", "RoleBinding", "Deployment",
                                         "Service", "PodDisruptionBudget"]
    assert kinds["ConfigMap"][0]["data"]["meshbatch.yaml"] == CONFIG  # as written, comments and all
    pod = kinds["Deployment"][0]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "reg/mb:1" and kinds["Deployment"][0]["spec"]["replicas"] == 3
    assert [(p["name"], p["containerPort"]) for p in container["ports"]] == [
        ("public-ingress", 8080), ("internal", 8443), ("admin", 9901)]
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "admin"}
    assert pod["terminationGracePeriodSeconds"] == 5 + 12 + 5
    assert pod["serviceAccountName"] == "edge" and pod["automountServiceAccountToken"] is True
    assert kinds["Role"][0]["rules"] == [{"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
                                          "verbs": ["get", "list", "watch"]}]
    assert kinds["RoleBinding"][0]["subjects"] == [{"kind": "ServiceAccount", "name": "edge", "namespace": "shop"}]
    assert [p["port"] for p in kinds["Service"][0]["spec"]["ports"]] == [8080, 8443]
    assert all(d["metadata"]["namespace"] == "shop" for d in docs)
    assert validate_all(docs) == []


def test_without_kubernetes_discovery_there_is_no_api_access_and_one_replica_has_no_budget() -> None:
    config = CONFIG.replace("discovery: {type: kubernetes, service: web, port_name: http}", "endpoints: [a:1]")
    docs = render(config, RenderOptions(replicas=1))
    assert [d["kind"] for d in docs] == ["ConfigMap", "ServiceAccount", "Deployment", "Service"]
    assert docs[1]["automountServiceAccountToken"] is False
    assert all("namespace" not in d["metadata"] for d in docs)
    assert validate_all(docs) == []


def test_another_namespace_gets_its_own_role() -> None:
    config = CONFIG.replace("service: web,", "service: web, namespace: backend,")
    docs = render(config, RenderOptions(namespace="edge"))
    roles = [(d["kind"], d["metadata"]["namespace"]) for d in docs if d["kind"] in ("Role", "RoleBinding")]
    assert roles == [("Role", "backend"), ("RoleBinding", "backend")]
    with pytest.raises(RenderError) as caught:
        render(config, RenderOptions())
    assert str(caught.value.problems[0]).startswith("clusters[0].discovery.namespace: 'backend': granting access")


def test_what_cannot_run_in_a_pod_is_refused_with_paths() -> None:
    bad = CONFIG.replace("0.0.0.0:9901", "127.0.0.1:9901").replace("0.0.0.0:8080", "0.0.0.0:0")
    with pytest.raises(RenderError) as caught:
        render(bad, RenderOptions(name="Bad_Name"))
    found = [str(p) for p in caught.value.problems]
    assert found[0].startswith("--name: 'Bad_Name' is not a DNS label")
    assert any(p.startswith("listeners[0].listen: port 0 picks a free port") for p in found)
    assert any(p.startswith("admin.listen: 127.0.0.1:9901 is loopback") for p in found)
    with pytest.raises(RenderError) as caught:
        render("admin: null\n" + CONFIG.split("\n", 1)[1], RenderOptions())
    assert str(caught.value.problems[0]).startswith("admin: the pod's probes need the admin listener")
    with pytest.raises(RenderError) as caught:
        render(CONFIG.replace("max_items", "x").replace("cluster: web}", "cluster: nope}"), RenderOptions())
    assert str(caught.value.problems[0]).startswith("listeners[0].routes[0].cluster: no cluster named 'nope'")


def test_port_names_are_valid_service_port_names() -> None:
    taken: set[str] = set()
    names = [port_name(raw, taken) for raw in ("ingress", "INGRESS", "a_very_long_listener_name", "8080", "--")]
    assert names == ["ingress", "ingress-2", "a-very-long-lis", "p-8080", "http"]
