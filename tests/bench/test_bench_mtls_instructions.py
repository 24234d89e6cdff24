"""`bench.mtls_instructions`: the mTLS sidecar pair in one process, for callgrind's instruction counts."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

from meshbatch import checkout


def test_the_plain_variant_is_the_same_pair_without_tls(tmp_path: Path) -> None:
    root = checkout.find("bench")
    sys.path.insert(0, str(root))
    try:
        module = importlib.import_module("bench.mtls_instructions")
    finally:
        sys.path.remove(str(root))
    for plain in (False, True):
        folder = tmp_path / ("plain" if plain else "tls")
        folder.mkdir()
        inbound, outbound, port = module.configs(folder, plain, 9)
        texts = inbound.read_text(), outbound.read_text()
        assert port > 0 and all("identity:" in text for text in texts)
        assert all(("tls:" in text) != plain for text in texts), texts


def test_requests_go_through_both_sidecars_over_mtls() -> None:
    done = subprocess.run([sys.executable, "-m", "bench.mtls_instructions", "20", "--connections", "2"],
                          cwd=checkout.find("bench"), capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]  # (a request not answered 200 exits with its answer)
