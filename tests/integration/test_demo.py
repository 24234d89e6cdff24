"""`meshbatch demo`: the example mesh runs its two short loads, prints the table and writes the plot."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from testbed.upstream import refused_port


def test_demo_runs_prints_the_table_and_writes_the_plot(tmp_path: Path) -> None:
    plot = tmp_path / "demo.png"
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = dict(os.environ, COLUMNS="200", PYTHONUNBUFFERED="1", TMPDIR=str(temp))
    done = subprocess.run(
        [sys.executable, "-m", "meshbatch", "demo", "--duration", "2", "--port", str(refused_port()),
         "--concurrency", "16", "--plot", str(plot)],
        capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for header in ("events/s", "p50", "p99", "upstream calls", "mean batch", "rows stored"):
        assert header in out, out
    rows = [line for line in out.splitlines() if "direct, one call per event" in line or "through meshbatch" in line]
    table = [line for line in rows if "│" in line or "|" in line]
    assert len(table) == 2, out
    for line in table:
        cells = [c.strip() for c in line.replace("|", "│").split("│") if c.strip()]
        assert cells[-1] == "ok", f"rows stored must match events sent: {line}"
        assert int(cells[1].replace(",", "")) > 0, line
    batched = next(line for line in table if "through meshbatch" in line)
    mean_batch = float([c.strip() for c in batched.split("│") if c.strip()][5])
    assert mean_batch >= 1.0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot.stat().st_size > 1000
    assert list(temp.iterdir()) == [], "the demo removes its work directory on exit"


def test_demo_keep_leaves_the_work_directory_and_says_where(tmp_path: Path) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = dict(os.environ, COLUMNS="200", PYTHONUNBUFFERED="1", TMPDIR=str(temp))
    done = subprocess.run(
        [sys.executable, "-m", "meshbatch", "demo", "--duration", "0.5", "--port", str(refused_port()),
         "--concurrency", "4", "--keep"],
        capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    [workdir] = list(temp.iterdir())
    assert workdir.name.startswith("meshbatch-demo-")
    assert f"work directory kept: {workdir}" in " ".join(done.stdout.split())
    assert (workdir / "proxy.log").exists()
    assert (workdir / "demo.png").read_bytes()[:4] == b"\x89PNG"  # the plot's default place with --keep


def test_demo_on_a_busy_port_names_it_and_how_to_choose_another(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "meshbatch", "demo", "--port", str(port)],
                              capture_output=True, text=True, timeout=30, cwd=tmp_path,
                              env=dict(os.environ, COLUMNS="200", TMPDIR=str(tmp_path)))
    assert done.returncode == 1
    out = " ".join(done.stdout.split())
    assert f"port {port} is busy" in out, out
    assert "--port" in out
    assert not list(tmp_path.glob("meshbatch-demo-*"))
