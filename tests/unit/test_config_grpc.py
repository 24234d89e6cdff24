"""Config of gRPC proxying: the grpc health check and the gRPC retry conditions, bad values reported with their
paths."""

from __future__ import annotations

from textwrap import dedent

import pytest

from meshbatch.config import ConfigError, parse

BASE = """
listeners:
  - name: main
    listen: 127.0.0.1:0
    codec: http2
    routes:
      - name: rpc
        match: {path_prefix: /inventory.Inventory/}
        cluster: inventory
        retry: {retry_on: [RETRY]}
clusters:
  - name: inventory
    endpoints: [127.0.0.1:9000]
    protocol: PROTOCOL
    health_check: CHECK
"""


def _config(retry: str = "unavailable", protocol: str = "http2", check: str = "{type: grpc}") -> str:
    return dedent(BASE).replace("RETRY", retry).replace("PROTOCOL", protocol).replace("CHECK", check)


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return [str(p) for p in info.value.problems]


def test_a_grpc_route_and_cluster_load() -> None:
    config = parse(_config("unavailable, resource-exhausted, cancelled, deadline-exceeded, internal, reset",
                           check="{type: grpc, service: inventory.Inventory, interval_ms: 1000}"))
    check = config.clusters[0].health_check
    assert check is not None and (check.type, check.service) == ("grpc", "inventory.Inventory")
    assert parse(_config(check="{path: /healthz}")).clusters[0].health_check.type == "http"  # type: ignore[union-attr]


@pytest.mark.parametrize(("retry", "protocol", "check", "expected"), [
    ("unavailable", "http1", "{type: grpc}",
     "clusters[0]: health_check type grpc needs protocol: http2 (gRPC runs over HTTP/2)"),
    ("unavailable", "http2", "{type: grpc, path: /health}",
     "clusters[0].health_check: a grpc health check calls grpc.health.v1.Health/Check: path and "
     "expected_statuses are for type http"),
    ("unavailable", "http2", "{service: x}", "clusters[0].health_check: service is for a grpc health check"),
    ("unavailable", "http2", "{type: grpcc}", "clusters[0].health_check.type"),
    ("not-found", "http2", "{type: grpc}", "listeners[0].routes[0].retry.retry_on[0]"),
])
def test_bad_values_are_reported_with_their_path(retry: str, protocol: str, check: str, expected: str) -> None:
    found = problems(_config(retry, protocol, check))
    assert len(found) == 1 and found[0].startswith(expected), found
