"""What the command-line tests share: the installed `meshbatch` command, a valid and an invalid config with the
errors `check` names for it, and a writer for config files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from textwrap import dedent

MESHBATCH = str(Path(sys.executable).parent / "meshbatch")

GOOD = """
admin:
  listen: 127.0.0.1:0
listeners:
  - name: ingress
    listen: 127.0.0.1:0
    routes:
      - name: orders
        match: {host: service, path_prefix: /orders, methods: [POST]}
        cluster: consumer
        timeout_ms: 2000
        batch: {max_items: 64, max_wait_ms: 5, codec: json-array, upstream_path: /orders/batch}
      - name: rest
        cluster: consumer
clusters:
  - name: consumer
    endpoints: [127.0.0.1:9000, 127.0.0.1:9001]
    lb: round_robin
"""

BAD = """
listeners:
  - name: ingress
    listen: 127.0.0.1:0
    routes:
      - name: orders
        cluster: consumer
        batch: {max_items: 0, max_itmes: 3}
      - name: rest
        cluster: consumr
clusters:
  - name: consumer
    endpoints: [127.0.0.1:9000]
"""

BAD_ERRORS = [
    "listeners[0].routes[0].batch.max_items: must be >= 1",
    "listeners[0].routes[0].batch.max_itmes: unknown key; did you mean 'max_items'?",
    "listeners[0].routes[1].cluster: no cluster named 'consumr'; did you mean 'consumer'?",
]


def meshbatch(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MESHBATCH, *args], capture_output=True, text=True, timeout=timeout)


def write(tmp_path: Path, text: str, name: str = "mesh.yaml") -> Path:
    path = tmp_path / name
    path.write_text(dedent(text))
    return path


__all__ = ["BAD", "BAD_ERRORS", "GOOD", "MESHBATCH", "meshbatch", "write"]
