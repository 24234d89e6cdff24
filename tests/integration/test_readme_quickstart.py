"""The README's quick start, run as printed: the shell block after the `<!-- quickstart` marker, line for
line through bash from the repository root, with the example upstream, `meshbatch run` on
examples/quickstart.yaml, a lone curl and 50 concurrent ones. Batches must form.

The printed ports (8080, 9901, 9000) are used when they are free; on a machine where one is taken, every
occurrence in the block and in a copy of the config is replaced by a free port, and nothing else changes.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from testbed.fleet import free_port

ROOT = Path(__file__).resolve().parents[2]
MARKER = "<!-- quickstart"
PORTS = (8080, 9901, 9000)
CONFIG = "examples/quickstart.yaml"


def quickstart_block(readme: str) -> str:
    """The first ```sh block after the marker."""
    after = readme.split(MARKER, 1)[1]
    match = re.search(r"```sh\n(.*?)```", after, re.S)
    assert match is not None, "no ```sh block after the quick start marker"
    return match.group(1)


def _free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def with_free_ports(block: str, tmp_path: Path) -> str:
    moved = {port: free_port() for port in PORTS if not _free(port)}
    if not moved:
        return block
    config = (ROOT / CONFIG).read_text()
    for old, new in moved.items():
        block = block.replace(f"127.0.0.1:{old}", f"127.0.0.1:{new}")
        config = config.replace(f"127.0.0.1:{old}", f"127.0.0.1:{new}")
    (tmp_path / "quickstart.yaml").write_text(config)
    return block.replace(CONFIG, str(tmp_path / "quickstart.yaml"))


def test_the_block_is_what_the_test_expects() -> None:
    block = quickstart_block((ROOT / "README.md").read_text())
    lines = [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert lines[0].startswith("make venv")
    assert any("meshbatch example-upstream" in line and re.search(r"&\s*(#.*)?$", line) for line in lines)
    assert any(f"meshbatch run --config {CONFIG}" in line for line in lines)
    assert any("--parallel-max 50" in line for line in lines)
    assert lines[-1].startswith("kill %1 %2")


def test_the_quick_start_runs_as_printed_and_batches_form(tmp_path: Path) -> None:
    script = with_free_ports(quickstart_block((ROOT / "README.md").read_text()), tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHBATCH_")}
    proc = subprocess.Popen(["bash", "-e", "-c", script], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"the quick start did not finish in 240 s\n{out[-3000:]}\n{err[-3000:]}")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # anything the block left behind
        except ProcessLookupError:
            pass
    assert proc.returncode == 0, f"{out[-3000:]}\n{err[-3000:]}"
    # the lone request: answered by the upstream through a batch of one
    assert "HTTP/1.1 200 OK" in out and '"order":{"sku":"A1"},"batch_size":1' in out, out[:2000]
    # the 50 concurrent callers: `uniq -c` lines of `COUNT x-meshbatch-batch-size: SIZE`
    sizes = {int(size): int(count) for count, size in
             re.findall(r"^\s*(\d+) x-meshbatch-batch-size: (\d+)\s*$", out, re.M | re.I)}
    assert sum(sizes.values()) == 1000, out  # every concurrent request answered, each with its batch's size
    batched = sum(count for size, count in sizes.items() if size > 1)
    assert batched >= 500 and max(sizes) >= 8, sizes  # most callers shared a batch
    stats = re.search(r'\{"calls":(\d+),"items":(\d+),"largest_batch":(\d+)\}', out)
    assert stats is not None, out[-2000:]
    calls, items, _ = map(int, stats.groups())
    assert items == 1001 and calls < items / 2, stats.group(0)
