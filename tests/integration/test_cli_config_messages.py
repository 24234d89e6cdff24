"""`meshbatch check` on configs that rely on a default, or do not parse: what the operator is told."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from textwrap import dedent

MESHBATCH = str(Path(sys.executable).parent / "meshbatch")

ROUTES = """
listeners:
  - name: ingress
    listen: 127.0.0.1:0
    routes:
      - name: orders
        match: {path_prefix: /orders}
        cluster: consumer
        batch: {max_items: 8}
      - name: payments
        match: {path_prefix: /payments}
        cluster: consumer
        batch: {upstream_path: /payments/batch}
clusters:
  - name: consumer
    endpoints: [127.0.0.1:9000]
"""


def check(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "config.yaml"
    path.write_text(dedent(text))
    return subprocess.run([MESHBATCH, "check", str(path)], capture_output=True, text=True, timeout=20, check=False)


def test_a_batch_route_on_the_default_upstream_path_gets_a_note(tmp_path: Path) -> None:
    out = check(tmp_path, ROUTES)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"{tmp_path / 'config.yaml'}: ok: 1 listener(s), 2 route(s) (2 batching)")
    notes = [line for line in out.stderr.splitlines() if "note:" in line]
    assert len(notes) == 1  # payments names its path: no note
    assert "listeners[0].routes[0] (orders): batch.upstream_path is not set" in notes[0]
    assert "POST /batch" in notes[0]
    assert notes[0].startswith(f"{tmp_path / 'config.yaml'}: note: ")  # check says it once, as its own line
    as_json = subprocess.run([MESHBATCH, "check", "--json", str(tmp_path / "config.yaml")], capture_output=True,
                             text=True, timeout=20, check=False)
    assert as_json.returncode == 0 and "note:" not in as_json.stderr
    reported = json.loads(as_json.stdout)["notes"]
    assert len(reported) == 1 and "batch.upstream_path is not set" in reported[0]


def test_a_yaml_syntax_error_quotes_the_line_with_a_caret(tmp_path: Path) -> None:
    out = check(tmp_path, "listeners:\n  - name: l\n    listen: a: b\n")
    assert out.returncode == 1
    lines = out.stderr.splitlines()
    assert lines[1].strip().startswith("line 3, column 14: mapping values are not allowed")
    assert lines[2:] == ["        listen: a: b", "                 ^"]
