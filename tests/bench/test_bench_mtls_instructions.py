"""`bench.mtls_instructions`: the mTLS sidecar pair in one process, for callgrind's instruction counts."""

from __future__ import annotations

import importlib
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import uvloop

from meshbatch import checkout


def _module() -> ModuleType:
    root = checkout.find("bench")
    sys.path.insert(0, str(root))
    try:
        return importlib.import_module("bench.mtls_instructions")
    finally:
        sys.path.remove(str(root))


def test_the_plain_variant_is_the_same_pair_without_tls(tmp_path: Path) -> None:
    module = _module()
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


def test_a_run_that_fails_leaves_no_files_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = _module()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    def failing(*args: Any, **kwargs: Any) -> None:
        raise SystemExit("the proxy did not start")

    monkeypatch.setattr(module, "Proxy", failing)  # after the certificates and configs were written
    loop = uvloop.new_event_loop()
    try:
        with pytest.raises(SystemExit):
            loop.run_until_complete(module.run(8, 2, False))
    finally:
        loop.close()
    assert list(tmp_path.iterdir()) == []
