"""`discovery: {type: kubernetes, ...}` is validated like every other source: each error with its path."""

from __future__ import annotations

import pytest

from meshbatch.config import ConfigError, parse

BASE = """
listeners:
  - name: main
    listen: 127.0.0.1:0
    routes: [{name: all, cluster: web}]
clusters:
  - name: web
    discovery: {DISCOVERY}
"""


def problems(discovery: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(BASE.replace("{DISCOVERY}", discovery))
    return [str(p) for p in caught.value.problems]


def test_a_valid_source() -> None:
    config = parse(BASE.replace("{DISCOVERY}", "{type: kubernetes, service: web, namespace: shop, port_name: http, "
                                               "kubeconfig: /k, context: c, timeout_ms: 3000}"))
    discovery = config.clusters[0].discovery
    assert discovery is not None and (discovery.service, discovery.port_name) == ("web", "http")
    assert parse(BASE.replace("{DISCOVERY}", "{type: kubernetes, service: web, port: 8080}"))


def test_errors_have_paths() -> None:
    assert problems("{type: kubernetes}") == ["clusters[0].discovery.service: is required for discovery type "
                                              "'kubernetes'"]
    found = problems("{type: kubernetes, service: Web_1, namespace: -x, port: 80, port_name: http, prefix: /a}")
    assert "clusters[0].discovery.prefix: does not apply to discovery type 'kubernetes'" in found
    assert any(p.startswith("clusters[0].discovery.service: 'Web_1' is not a Service name") for p in found)
    assert any(p.startswith("clusters[0].discovery.namespace: '-x' is not a DNS label") for p in found)
    assert ("clusters[0].discovery.port_name: set either port (the endpoints' port number) or port_name, "
            "not both") in found
    assert any("did you mean 'kubernetes'" in p for p in problems("{type: kubernets, service: web}"))
    assert problems("{type: kubernetes, service: web, port: 0}")[0].startswith("clusters[0].discovery.port:")


def test_the_service_keys_do_not_apply_to_other_sources() -> None:
    found = problems("{type: dns, name: web.local, port: 80, service: web}")
    assert found == ["clusters[0].discovery.service: does not apply to discovery type 'dns'"]
