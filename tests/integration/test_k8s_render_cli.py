"""`meshbatch k8s render` as a user runs it: a subprocess, files written, exit codes, errors with paths; what
it writes is strictly valid and the config inside passes `meshbatch check`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from meshbatch.cli import main as cli
from testbed.k8s_validate import config_maps_with_configs, documents, validate_all

CONFIG = """\
admin:
  listen: 0.0.0.0:9901
listeners:
  - name: ingress
    listen: 0.0.0.0:8080
    routes:
      - name: orders
        match: {host: service, path_prefix: /orders, methods: [POST]}
        cluster: orders
        batch: {max_items: 32, max_wait_ms: 2, codec: json-array, upstream_path: /orders/batch}
clusters:
  - name: orders
    discovery: {type: kubernetes, service: orders, namespace: shop, port: 9000}
"""


def meshbatch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meshbatch", *args], capture_output=True, text=True, timeout=60,
                          check=False)


def test_render_writes_valid_manifests_whose_config_passes_check(tmp_path: Path) -> None:
    config = tmp_path / "orders.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    out = tmp_path / "out"
    result = meshbatch("k8s", "render", "--config", str(config), "--namespace", "shop", "--replicas", "4",
                       "--image", "registry.example/meshbatch:1.2.3", "--name", "orders-proxy", "--out", str(out))
    assert result.returncode == 0, result.stderr
    written = out / "orders-proxy.yaml"
    docs = documents(written.read_text(encoding="utf-8"))
    assert validate_all(docs) == []
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 4 and deployment["metadata"]["namespace"] == "shop"
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/meshbatch:1.2.3"
    assert {d["kind"] for d in docs} >= {"ConfigMap", "ServiceAccount", "Role", "RoleBinding", "Service"}
    (name, text), = config_maps_with_configs(docs).items()
    assert name == "orders-proxy-config/meshbatch.yaml" and text == CONFIG
    inside = tmp_path / "inside.yaml"
    inside.write_text(text, encoding="utf-8")
    checked = meshbatch("check", str(inside))
    assert checked.returncode == 0 and "1 batching" in checked.stdout, checked.stderr


def test_a_config_that_cannot_run_in_a_pod_exits_1_with_every_problem(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """In-process (the same `main` as the command; the test above runs the real one)."""
    invalid, loopback = tmp_path / "invalid.yaml", tmp_path / "loopback.yaml"
    invalid.write_text(CONFIG.replace("max_items: 32", "max_items: 0"), encoding="utf-8")
    loopback.write_text(CONFIG.replace("0.0.0.0:9901", "127.0.0.1:9901"), encoding="utf-8")
    assert cli(["k8s", "render", "--config", str(invalid)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and f"{invalid}: 1 error(s)" in err
    assert "listeners[0].routes[0].batch.max_items: " in err
    assert cli(["k8s", "render", "--config", str(loopback)]) == 1
    err = capsys.readouterr().err
    assert f"{loopback}: 2 error(s)" in err and "admin.listen: 127.0.0.1:9901 is loopback" in err
    assert "clusters[0].discovery.namespace: 'shop': granting access to another namespace needs --namespace" in err
    assert cli(["k8s", "render", "--config", str(tmp_path / "missing.yaml")]) == 1
    assert "cannot read" in capsys.readouterr().err
