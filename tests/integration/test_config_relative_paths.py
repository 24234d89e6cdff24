"""Relative file paths in a config resolve against the config file's folder, whatever the working directory:
`meshbatch check` and `meshbatch run` started elsewhere read the same schema and write the same log and sink."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import yaml

from testbed.proxy import MeshbatchProcess
from testbed.stores import sqlite_rows

SCHEMA = {"type": "object", "required": ["sku"], "properties": {"sku": {"type": "string"}}}


def _layout(tmp_path: Path) -> tuple[Path, Path]:
    """conf/mesh.yaml naming schemas/order.json and data/*.db relatively; and another folder to run from."""
    conf = tmp_path / "conf"
    (conf / "schemas").mkdir(parents=True)
    (conf / "schemas" / "order.json").write_text(json.dumps(SCHEMA))
    route = {"name": "orders", "match": {"path_prefix": "/orders"},
             "pipeline": [{"decode": None}, {"validate": {"schema": "schemas/order.json"}}],
             "ingest": {"log": {"path": "data/log.db"}, "sink": {"type": "sqlite", "path": "./data/../data/sink.db"}}}
    config = {"admin": {"listen": "127.0.0.1:0"},
              "listeners": [{"name": "main", "listen": "127.0.0.1:0", "routes": [route]}]}
    (conf / "mesh.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    return conf / "mesh.yaml", elsewhere


def _check(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meshbatch", "check", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=30)


def test_check_from_another_directory_finds_the_schema_beside_the_config(tmp_path: Path) -> None:
    config, elsewhere = _layout(tmp_path)
    relative = os.path.relpath(config, elsewhere)  # ../conf/mesh.yaml
    done = _check(relative, cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    (config.parent / "schemas" / "order.json").unlink()
    done = _check(relative, cwd=elsewhere)
    assert done.returncode == 1
    # the error names the file where the config's folder puts it, not where the working directory would
    assert f"cannot read schema file {config.parent / 'schemas' / 'order.json'}" in done.stderr, done.stderr


def test_run_from_another_directory_reads_and_writes_beside_the_config(tmp_path: Path) -> None:
    config, elsewhere = _layout(tmp_path)
    proxy = MeshbatchProcess(Path(os.path.relpath(config, elsewhere)), cwd=elsewhere)
    try:
        refused = httpx.post(proxy.url("main", "/orders"), json={"sku": 7}, timeout=10)
        assert refused.status_code == 422, refused.text  # the schema was read: a number is not a sku
        accepted = httpx.post(proxy.url("main", "/orders"), json={"sku": "A1"}, timeout=10)
        assert accepted.status_code == 202, accepted.text
    finally:
        assert proxy.terminate() == 0
    data = config.parent / "data"
    assert (data / "log.db").exists()
    assert len(sqlite_rows(data / "sink.db")) == 1
    assert not any(elsewhere.iterdir()), list(elsewhere.iterdir())  # nothing written where it was started
