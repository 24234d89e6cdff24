"""File paths in a config: every field that names a file is marked, and relative ones resolve against the
config file's folder (meshbatch.config.model.base.ReadPath and its kin; meshbatch.config.fields)."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshbatch.config import ConfigError, load, parse
from meshbatch.config.fields import paths, unmarked_path_fields
from meshbatch.config.model import Config

CONFIG = """
admin: {listen: 127.0.0.1:9901}
identity: {cert: certs/proxy.crt, key: certs/proxy.key, ca: /etc/mesh/ca.crt}
access_log: {path: "-"}
tracing: {exporter: file, path: spans.jsonl}
listeners:
  - name: main
    listen: 127.0.0.1:8080
    routes:
      - name: orders
        match: {path_prefix: /orders}
        pipeline:
          - decode:
          - validate: {schema: {type: object}}
        ingest:
          log: {path: ../state/log.db}
          sink: {type: sqlite, path: ~/sink.db}
clusters:
  - name: up
    discovery: {type: file, path: endpoints.yaml}
"""


def test_every_field_that_names_a_file_is_marked() -> None:
    assert unmarked_path_fields(Config) == []


def test_paths_are_kept_as_written_without_a_base() -> None:
    found = {m.path: (m.kind, m.value) for m in paths(parse(CONFIG))}
    assert found == {
        "access_log.path": ("write", "-"),
        "tracing.path": ("write", "spans.jsonl"),
        "identity.cert": ("read", "certs/proxy.crt"),
        "identity.key": ("secret", "certs/proxy.key"),
        "identity.ca": ("read", "/etc/mesh/ca.crt"),
        "listeners[0].routes[0].ingest.log.path": ("write", "../state/log.db"),
        "listeners[0].routes[0].ingest.sink.path": ("write", "~/sink.db"),
        "clusters[0].discovery.path": ("read", "endpoints.yaml"),
    }


def test_relative_paths_resolve_against_the_base(tmp_path: Path) -> None:
    config = parse(CONFIG, base_dir=tmp_path / "conf")
    route = config.listeners[0].routes[0]
    assert config.identity is not None and config.tracing is not None and config.access_log is not None
    assert config.identity.cert == str(tmp_path / "conf" / "certs" / "proxy.crt")
    assert config.identity.ca == "/etc/mesh/ca.crt"  # absolute: kept
    assert config.access_log.path == "-"  # stdout: kept
    assert config.tracing.path == str(tmp_path / "conf" / "spans.jsonl")
    assert route.ingest.log.path == str(tmp_path / "state" / "log.db")  # type: ignore[union-attr]
    assert route.ingest.sink.path == str(Path.home() / "sink.db")  # type: ignore[union-attr]
    assert config.clusters[0].discovery.path == str(tmp_path / "conf" / "endpoints.yaml")  # type: ignore[union-attr]


def test_load_resolves_against_the_file_s_folder_and_the_schema_check_reads_it_there(tmp_path: Path,
                                                                                        monkeypatch: pytest.MonkeyPatch
                                                                                        ) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "order.json").write_text('{"type": "object"}')
    text = """
listeners:
  - name: main
    listen: 127.0.0.1:8080
    routes:
      - name: orders
        match: {path_prefix: /orders}
        pipeline: [{decode: }, {validate: {schema: order.json}}]
        ingest: {}
"""
    (conf / "mesh.yaml").write_text(text)
    monkeypatch.chdir(tmp_path)
    step = load("conf/mesh.yaml", log_notes=False).listeners[0].routes[0].pipeline[1]  # type: ignore[union-attr]
    assert step.validate_ is not None and step.validate_.schema_ == str(conf / "order.json")
    with pytest.raises(ConfigError) as caught:  # parsed without a base: the working directory has no order.json
        parse(text)
    assert "cannot read schema file order.json" in str(caught.value)


def test_an_invalid_config_still_checks_files_against_the_base(tmp_path: Path) -> None:
    """When shapes fail, the checks of meaning run on a lenient tree: its paths resolve the same way."""
    (tmp_path / "order.json").write_text('{"type": "object"}')
    text = """
listeners:
  - name: main
    listen: 127.0.0.1:8080
    routes:
      - name: orders
        match: {path_prefix: /orders}
        pipeline: [{decode: }, {validate: {schema: order.json}}]
        ingest: {delivery: {max_items: 0}}
"""
    with pytest.raises(ConfigError) as caught:
        parse(text, base_dir=tmp_path)
    assert [p.path for p in caught.value.problems] == ["listeners[0].routes[0].ingest.delivery.max_items"]
