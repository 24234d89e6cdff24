"""The observability keys: defaults, and every problem reported with its path."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshbatch.config import ConfigError, load

BASE = """
listeners:
  - name: main
    listen: 127.0.0.1:0
    routes: [{name: all, cluster: c}]
clusters: [{name: c, endpoints: [127.0.0.1:9000]}]
"""


def _problems(tmp_path: Path, extra: str) -> list[str]:
    path = tmp_path / "m.yaml"
    path.write_text(BASE + extra)
    with pytest.raises(ConfigError) as info:
        load(path)
    return [str(p) for p in info.value.problems]


def test_defaults_are_off_except_the_recorder(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(BASE)
    config = load(path)
    assert config.access_log is None and config.tracing is None
    assert config.recorder.max_items == 65_536


def test_keys_that_need_each_other(tmp_path: Path) -> None:
    problems = _problems(tmp_path, "tracing: {exporter: file}\n")
    assert problems == ["tracing.path: is required for exporter 'file' (a file of one JSON span per line)"]
    problems = _problems(tmp_path, "tracing: {exporter: console, path: x.json, endpoint: 'http://h:1/v1/traces'}\n")
    assert problems == ["tracing.path: does not apply to exporter 'console' (only to 'file')",
                        "tracing.endpoint: does not apply to exporter 'console' (only to 'otlp')"]


def test_ranges_and_shapes(tmp_path: Path) -> None:
    problems = _problems(tmp_path, "access_log: {sample: 1.5, flush_ms: 0}\ntracing: {endpoint: 'grpc://x:4317'}\n")
    assert any(p.startswith("access_log.sample:") for p in problems)
    assert any(p.startswith("access_log.flush_ms:") for p in problems)
    assert any(p.startswith("tracing.endpoint:") and "http(s)" in p for p in problems)
