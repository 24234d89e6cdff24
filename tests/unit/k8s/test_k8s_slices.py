"""EndpointSlices to endpoints, pure: readiness, the terminating fallback, port choice, metadata, addresses."""

from __future__ import annotations

from meshbatch.discovery.kubernetes_slices import PortChoice, view
from testbed.k8s_api import endpoint, endpoint_slice

TWO_PORTS = [{"name": "http", "port": 8080}, {"name": "metrics", "port": 9090}]


def test_ready_endpoints_take_traffic_with_zone_node_and_pod_metadata() -> None:
    slice_ = endpoint_slice("a", "web", [endpoint("10.0.0.2", zone="z2", node="n2", pod="web-2"),
                                         endpoint("10.0.0.1", ready=None), endpoint("10.0.0.3", ready=False)])
    out = view([slice_], PortChoice())
    assert [e.address for e in out.endpoints] == ["10.0.0.1:80", "10.0.0.2:80"]  # ready unset counts as ready
    assert out.endpoints[1].metadata == {"zone": "z2", "node": "n2", "pod": "web-2"}
    assert (out.ready, out.not_ready, out.terminating, out.fallback) == (2, 1, 0, False)


def test_serving_terminating_endpoints_are_used_only_when_none_is_ready() -> None:
    draining = [endpoint("10.0.0.1", ready=False, serving=True, terminating=True),
                endpoint("10.0.0.2", ready=False, serving=False, terminating=True)]
    out = view([endpoint_slice("a", "web", draining)], PortChoice())
    assert [(e.address, e.metadata) for e in out.endpoints] == [("10.0.0.1:80", {"terminating": "true"})]
    assert out.fallback and out.terminating == 2
    with_ready = view([endpoint_slice("a", "web", [*draining, endpoint("10.0.0.3")])], PortChoice())
    assert [e.address for e in with_ready.endpoints] == ["10.0.0.3:80"] and not with_ready.fallback


def test_the_port_is_chosen_by_name_by_number_or_as_the_only_one_per_slice() -> None:
    a = endpoint_slice("a", "web", [endpoint("10.0.0.1")], ports=TWO_PORTS)
    b = endpoint_slice("b", "web", [endpoint("10.0.0.2")], ports=[{"name": "http", "port": 8081}])
    assert [e.address for e in view([a, b], PortChoice(name="http")).endpoints] == ["10.0.0.1:8080",
                                                                                 "10.0.0.2:8081"]
    by_number = view([a, b], PortChoice(number=9090))
    assert [e.address for e in by_number.endpoints] == ["10.0.0.1:9090"]
    assert by_number.problems == {"b": "no port 9090"}
    only = view([a, b], PortChoice())
    assert [e.address for e in only.endpoints] == ["10.0.0.2:8081"]
    assert only.problems["a"] == "2 ports (http=8080, metrics=9090): set port_name or port"
    assert view([a], PortChoice(name="grpc")).problems == {"a": "no port named 'grpc'"}


def test_ipv6_fqdn_empty_and_duplicate_addresses() -> None:
    v6 = endpoint_slice("v6", "web", [endpoint("fd00::1")], address_type="IPv6")
    fqdn = endpoint_slice("fqdn", "web", [endpoint("db.example.com")], address_type="FQDN")
    empty = endpoint_slice("empty", "web", [{"addresses": [], "conditions": {"ready": True}}])
    again = endpoint_slice("again", "web", [endpoint("db.example.com")])  # a pod moving between slices
    out = view([v6, fqdn, empty, again], PortChoice())
    assert [e.address for e in out.endpoints] == ["[fd00::1]:80", "db.example.com:80"]


def test_no_slices_or_no_endpoints_is_an_empty_set() -> None:
    assert view([], PortChoice()).endpoints == []
    assert view([endpoint_slice("a", "web", [])], PortChoice()).endpoints == []
    assert view([{"metadata": {"name": "x"}, "endpoints": None, "ports": None}], PortChoice()).endpoints == []
