"""The options of `meshbatch k8s render`: the autoscaler, Prometheus operator monitors, the admin port on the
Service, the app.kubernetes.io labels, and mesh routing (a Gateway API HTTPRoute whose parent is the routed
Service, an Istio VirtualService); each object strictly valid, bad options refused with the flag."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from meshbatch.k8s.mesh import parse_target
from meshbatch.k8s.options import RenderOptions
from meshbatch.k8s.render import RenderError, render
from testbed.k8s_validate import problems_of, validate_all

CONFIG = """\
admin: {listen: 0.0.0.0:9901}
listeners:
  - name: ingress
    listen: 0.0.0.0:8080
    routes:
      - {name: orders, match: {path_prefix: /orders}, cluster: orders, batch: {upstream_path: /orders/batch}}
clusters:
  - name: orders
    discovery: {type: kubernetes, service: orders-headless, port: 9000}
"""


def kinds(docs: list[Any]) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in docs}


def test_labels_name_the_version_part_of_and_manager_and_the_selector_stays_stable() -> None:
    docs = render(CONFIG, RenderOptions(name="orders-proxy", image="reg.example/mb:2.4.1", part_of="shop"))
    for doc in docs:
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/version"] == "2.4.1"
        assert labels["app.kubernetes.io/part-of"] == "shop"
        assert labels["app.kubernetes.io/managed-by"] == "meshbatch"
    deployment = kinds(docs)["Deployment"]
    assert deployment["spec"]["selector"] == {"matchLabels": {"app": "orders-proxy"}}  # no version: it changes
    assert deployment["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/version"] == "2.4.1"
    by_digest = render(CONFIG, RenderOptions(image="reg.example/mb@sha256:" + "a" * 64))
    assert by_digest[0]["metadata"]["labels"]["app.kubernetes.io/version"] == "0.1.0"  # the package's


def test_an_autoscaler_owns_the_replica_count() -> None:
    docs = render(CONFIG, RenderOptions(replicas=2, hpa_max=10, hpa_cpu=60))
    by = kinds(docs)
    hpa = by["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "meshbatch"}
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 10)
    assert hpa["metrics"][0]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 60}
    assert "replicas" not in by["Deployment"]["spec"] and "PodDisruptionBudget" in by
    assert validate_all(docs) == []


@pytest.mark.parametrize("kind", ["servicemonitor", "podmonitor"])
def test_a_prometheus_operator_monitor_scrapes_the_admin_port(kind: str) -> None:
    docs = render(CONFIG, RenderOptions(monitor=kind, monitor_interval="30s"))  # type: ignore[arg-type]
    by = kinds(docs)
    service_ports = [p["name"] for p in by["Service"]["spec"]["ports"]]
    if kind == "servicemonitor":
        spec = by["ServiceMonitor"]["spec"]
        assert spec["endpoints"] == [{"port": "admin", "path": "/metrics", "interval": "30s", "scheme": "http"}]
        assert service_ports == ["ingress", "admin"]  # a ServiceMonitor scrapes through the Service
    else:
        spec = by["PodMonitor"]["spec"]
        assert spec["podMetricsEndpoints"][0]["port"] == "admin"
        assert service_ports == ["ingress"]
    assert spec["selector"] == {"matchLabels": {"app": "meshbatch"}}
    assert validate_all(docs) == []


def test_the_admin_port_on_the_service_when_asked() -> None:
    docs = render(CONFIG, RenderOptions(admin_on_service=True))
    ports = kinds(docs)["Service"]["spec"]["ports"]
    assert ports[-1] == {"name": "admin", "port": 9901, "targetPort": "admin", "protocol": "TCP",
                         "appProtocol": "http"}


def test_gamma_routes_the_service_s_callers_through_the_proxy() -> None:
    docs = render(CONFIG, RenderOptions(route_service="orders:80"))
    route = kinds(docs)["HTTPRoute"]
    assert route["metadata"]["name"] == "orders-via-meshbatch"
    assert route["spec"] == {"parentRefs": [{"group": "", "kind": "Service", "name": "orders", "port": 80}],
                             "rules": [{"backendRefs": [{"group": "", "kind": "Service", "name": "meshbatch",
                                                         "port": 8080}]}]}
    assert "VirtualService" not in kinds(docs) and validate_all(docs) == []


def test_istio_routes_beside_gamma() -> None:
    docs = render(CONFIG, RenderOptions(route_service="orders", mesh_api="both"))
    by = kinds(docs)
    assert "port" not in by["HTTPRoute"]["spec"]["parentRefs"][0]
    http = by["VirtualService"]["spec"]["http"]
    assert http[0] == {"name": "from-the-proxy", "match": [{"sourceLabels": {"app": "meshbatch"}}],
                       "route": [{"destination": {"host": "orders"}}]}
    assert http[1]["route"] == [{"destination": {"host": "meshbatch", "port": {"number": 8080}}}]
    assert validate_all(docs) == []


def test_a_gamma_route_on_a_service_the_proxy_calls_by_name_is_refused() -> None:
    for cluster in ("discovery: {type: kubernetes, service: orders, port: 9000}", "endpoints: [orders:9000]",
                    "endpoints: ['orders.shop.svc.cluster.local:9000']",
                    "discovery: {type: dns, name: orders.shop.svc.cluster.local, port: 9000}"):
        config = CONFIG.replace("discovery: {type: kubernetes, service: orders-headless, port: 9000}", cluster)
        with pytest.raises(RenderError) as caught:
            render(config, RenderOptions(route_service="orders"))
        assert str(caught.value.problems[0]).startswith("clusters[0]: reaches 'orders' by its name"), cluster
        render(config, RenderOptions(route_service="orders", mesh_api="istio"))  # its sourceLabels rule: fine


@pytest.mark.parametrize(("options", "flag"), [
    (RenderOptions(hpa_max=1, replicas=3), "--hpa-max"),
    (RenderOptions(hpa_cpu=0), "--hpa-cpu"),
    (RenderOptions(storage_size="lots"), "--storage-size"),
    (RenderOptions(storage_class="Fast SSD"), "--storage-class"),
    (RenderOptions(monitor_interval="15"), "--monitor-interval"),
    (RenderOptions(part_of="-shop"), "--part-of"),
    (RenderOptions(managed_by="x" * 64), "--managed-by"),
    (RenderOptions(env_from=("Not_A_Secret",)), "--env-from"),
    (RenderOptions(pod_paths=("relative/path",)), "--pod-path"),
    (RenderOptions(route_service="Orders"), "--route-service"),
    (RenderOptions(route_service="orders:99999"), "--route-service"),
    (RenderOptions(route_service="meshbatch"), "--route-service"),
])
def test_bad_options_are_refused_with_the_flag(options: RenderOptions, flag: str) -> None:
    with pytest.raises(RenderError) as caught:
        render(CONFIG, options)
    assert [p.path for p in caught.value.problems] == [flag]


@pytest.mark.parametrize("raw", ["", ":80", "a:", "a:b", "a:0", "a" * 64, "a.b", "a:80:1", "\u00e9"])
def test_hostile_route_targets_are_value_errors(raw: str) -> None:
    with pytest.raises(ValueError):
        parse_target(raw)


def test_the_custom_resource_schemas_catch_what_a_cluster_would_refuse() -> None:
    docs = kinds(render(CONFIG, RenderOptions(route_service="orders", monitor="servicemonitor")))
    broken = copy.deepcopy(docs["HTTPRoute"])
    broken["spec"]["parentRefs"][0]["sectionname"] = "http"  # misspelt
    broken["spec"]["rules"][0]["backendRefs"][0]["port"] = 70000
    assert len(problems_of(broken)) == 2
    monitor = copy.deepcopy(docs["ServiceMonitor"])
    monitor["spec"]["endpoints"][0]["interval"] = "fifteen"
    del monitor["spec"]["selector"]
    assert len(problems_of(monitor)) == 2
    assert problems_of({"apiVersion": "monitoring.coreos.com/v1", "kind": "Probe", "metadata": {"name": "x"}}) \
        == ["Probe/x: no schema for monitoring.coreos.com/v1/Probe"]
