"""A TLS listener run out of file descriptors by a flood of connections that never say anything.

The proxy runs with a low RLIMIT_NOFILE (set on the running process with prlimit). Once it cannot accept any
more, the connections left in the backlog keep its listening socket readable: it must pause accepting (not
spin on EMFILE), keep its CPU time and its log small while the flood lasts, count the failures, and serve
again as soon as the flood's connections close.
"""

from __future__ import annotations

import os
import resource
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from testbed.config import cluster, config, listener, route
from testbed.pki import Pki, client_context, tls_request
from testbed.proxy import MeshbatchProcess, metric_value
from testbed.raw import get
from testbed.upstream import UpstreamServer

HEADROOM = 12  # descriptors the proxy may still open once limited
FLOOD = 200  # connections: far more than the headroom, the rest wait in the backlog
WINDOW = 2.0  # seconds of exhaustion measured


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` (fields 14 and 15 of /proc/PID/stat, in clock ticks)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.fixture
def proxy(mesh: Any, upstreams: dict[str, UpstreamServer], tmp_path: Path) -> tuple[MeshbatchProcess, Pki]:
    pki = Pki(tmp_path)
    pki.issue("server", "/ns/shop/sa/orders")
    pki.issue("client", "/ns/shop/sa/web")
    tls = {"mode": "strict", "handshake_timeout_ms": 60_000}  # silent connections hold their descriptor
    process = mesh.start(config([listener("main", [route("all", "echo")], tls=tls)],
                                [cluster("echo", upstreams["a"].address)], identity=pki.identity("server")))
    return process, pki


def test_out_of_descriptors_the_listener_pauses_instead_of_spinning(proxy: tuple[MeshbatchProcess, Pki]) -> None:
    process, pki = proxy
    pid = process.proc.pid
    address = process.address("main")
    good = client_context(pki.ca, pki.root / "client.crt", pki.root / "client.key")
    assert tls_request(address, good, get("/before")) == 200
    _, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (open_fds(pid) + HEADROOM, hard))
    flood: list[socket.socket] = []
    try:
        for _ in range(FLOOD):
            flood.append(socket.create_connection(address, timeout=5))
        time.sleep(0.5)  # the proxy accepts what it can and meets EMFILE
        lines, cpu = process.mark(), cpu_seconds(pid)
        time.sleep(WINDOW)
        spent = cpu_seconds(pid) - cpu
        logged = process.lines[lines:]
        assert spent < 0.1 * WINDOW, f"{spent:.2f} s of CPU in {WINDOW} s out of descriptors"
        assert len(logged) <= 5, logged[:5]
        assert any("EMFILE" in line for line in process.lines), process.stderr[-2000:]
    finally:
        for sock in flood:
            sock.close()
    deadline = time.monotonic() + 10
    while tls_request(address, good, get("/after"), timeout=2) != 200:  # served again once the flood is gone
        assert time.monotonic() < deadline, "the listener did not come back"
        time.sleep(0.1)
    metrics = httpx.get(process.url("admin", "/metrics"), timeout=5).text
    assert metric_value(metrics, "meshbatch_listener_accept_errors_total", listener="main", error="EMFILE") >= 1
