"""`meshbatch k8s render` of an ingest config, as a user runs it, and then the pod's view of its output run for
real: the ConfigMap's files and the Secret laid out where the pod mounts them, `meshbatch check` and
`meshbatch run` on the rewritten config with the Secret's environment, events accepted and stored on the data
volume, the schema from the ConfigMap applied."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from meshbatch.cli import main as cli
from testbed.k8s_pod import lay_out
from testbed.k8s_validate import documents, validate_all
from testbed.proxy import MeshbatchProcess
from testbed.stores import sqlite_rows

CONFIG = """\
admin: {listen: 0.0.0.0:9901, token: "${ADMIN_TOKEN}"}
listeners:
  - name: ingress
    listen: 0.0.0.0:8080
    routes:
      - name: readings
        match: {path_prefix: /readings}
        pipeline: [{decode: }, {validate: {schema: schemas/reading.json}}]
        ingest: {log: {path: state/readings.db}, sink: {type: sqlite, path: state/stored.db}}
"""


def meshbatch(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meshbatch", *args], capture_output=True, text=True, timeout=60,
                          check=False, env=None if env is None else {**os.environ, **env})


def test_rendered_ingest_manifests_run_as_the_pod_would_run_them(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "conf"
    (conf / "schemas").mkdir(parents=True)
    (conf / "schemas" / "reading.json").write_text('{"type": "object", "required": ["device"]}')
    (conf / "ingest.yaml").write_text(CONFIG)
    out = tmp_path / "out"
    assert cli(["k8s", "render", "--config", str(conf / "ingest.yaml"), "--out", str(out)]) == 1  # in-process
    assert "admin.token: ${ADMIN_TOKEN} is read from the pod's environment" in capsys.readouterr().err
    done = meshbatch("k8s", "render", "--config", str(conf / "ingest.yaml"), "--replicas", "3", "--env-from",
                     "proxy-admin", "--monitor", "podmonitor", "--out", str(out))
    assert done.returncode == 0, done.stderr
    docs = documents((out / "meshbatch.yaml").read_text())
    assert validate_all(docs) == []
    assert [d["kind"] for d in docs] == ["ConfigMap", "ServiceAccount", "StatefulSet", "Service",
                                         "PodDisruptionBudget", "PodMonitor"]
    config, env = lay_out(docs, tmp_path / "pod", listen={"0.0.0.0:8080": "127.0.0.1:0",
                                                          "0.0.0.0:9901": "127.0.0.1:0"})
    env["ADMIN_TOKEN"] = "a-token-from-proxy-admin"  # what the Secret of --env-from gives
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    checked = meshbatch("check", str(config), env=env)
    assert checked.returncode == 0, checked.stderr
    proxy = MeshbatchProcess(config, cwd=elsewhere, env=env)
    try:
        assert httpx.post(proxy.url("ingress", "/readings"), json={"t": 1}, timeout=10).status_code == 422
        assert httpx.post(proxy.url("ingress", "/readings"), json={"device": "d1"}, timeout=10).status_code == 202
    finally:
        assert proxy.terminate() == 0
    data = tmp_path / "pod" / "var" / "lib" / "meshbatch"
    assert (data / "readings.db").exists() and len(sqlite_rows(data / "stored.db")) == 1


def test_a_rendered_file_with_a_secret_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    (tmp_path / "mesh.yaml").write_text(CONFIG.replace("${ADMIN_TOKEN}", "0123456789abcdef-token")
                                        .replace("schemas/reading.json", "{type: object}"))
    assert cli(["k8s", "render", "--config", str(tmp_path / "mesh.yaml"), "--out", str(tmp_path / "out")]) == 0
    written = tmp_path / "out" / "meshbatch.yaml"
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert "0123456789abcdef-token" not in written.read_text()  # base64 in the Secret's data, not in clear
    assert "kind: Secret" in written.read_text()
