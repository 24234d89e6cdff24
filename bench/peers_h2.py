"""The processes of the `h2` scenario: nginx and meshbatch, each serving HTTP/2 (h2c with prior knowledge) and
proxying over HTTP/1.1 to the nginx upstream of the proxy scenario (bench/peers.py)."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

from . import peers
from .common import LOOPBACK, BenchError, CorePlan, Service, free_port, tool_version
from .peers import Peer


def nginx_version(nginx: str) -> tuple[int, ...]:
    found = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", tool_version([nginx, "-v"]))
    return tuple(int(part) for part in found.groups()) if found else (0, 0, 0)


def nginx_h2_listen(port: int, version: tuple[int, ...]) -> str:
    """h2c on a plaintext listener: `http2 on;` from nginx 1.25.1, the `http2` listen flag before it (where a
    plaintext HTTP/2 listener speaks HTTP/2 with prior knowledge only)."""
    if version >= (1, 25, 1):
        return f"listen {LOOPBACK}:{port} backlog=4096;\n        http2 on;"
    return f"listen {LOOPBACK}:{port} http2 backlog=4096;"


def nginx_h2_conf(workdir: Path, port: int, upstream_port: int, version: tuple[int, ...]) -> str:
    """nginx terminating HTTP/2 and proxying over HTTP/1.1 to a keep-alive upstream pool."""
    return (
        peers._nginx_common(workdir, "nginx-h2")
        + "http {"
        + peers._nginx_http_common(workdir, "nginx-h2")
        + peers.nginx_pool("bench_upstream", upstream_port)
        + f"""
    http2_max_concurrent_streams 128;
    server {{
        {nginx_h2_listen(port, version)}
        location / {{
            proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""
    )


def meshbatch_h2_conf(port: int, upstream_port: int, codec: str) -> str:
    return peers.meshbatch_conf(port, upstream_port).replace(
        "    listen: ", f"    codec: {codec}\n    listen: ", 1)


def wait_h2(h2load: str, service: Service, port: int, timeout: float = 30.0) -> None:
    """Poll with one HTTP/2 request until it succeeds; fail early if the process exits. Stop it on failure."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    try:
        while time.monotonic() < deadline:
            if not service.alive():
                raise BenchError(f"{service.name} exited before it was ready:\n{service.log_tail()}")
            done = subprocess.run([h2load, "-n", "1", "-c", "1", f"http://{LOOPBACK}:{port}/"], capture_output=True,
                                  text=True, timeout=10, stdin=subprocess.DEVNULL)
            if "1 succeeded" in done.stdout and "1 2xx" in done.stdout:
                return
            last = (done.stdout + done.stderr).strip()[-300:]
            time.sleep(0.1)
        raise BenchError(f"{service.name} not ready over HTTP/2 within {timeout:.0f}s ({last})\n{service.log_tail()}")
    except BaseException:
        service.stop()
        raise


def start_nginx_h2(nginx: str, h2load: str, workdir: Path, cores: CorePlan, upstream_port: int) -> Peer:
    port = free_port()
    conf = workdir / "h2.nginx.conf"
    conf.write_text(nginx_h2_conf(workdir, port, upstream_port, nginx_version(nginx)))
    service = Service("nginx", [*cores.prefix("proxy"), nginx, "-c", str(conf), "-e", "stderr"], workdir)
    wait_h2(h2load, service, port)
    return Peer("nginx", port, service)


def start_meshbatch_h2(h2load: str, workdir: Path, cores: CorePlan, upstream_port: int, codec: str) -> Peer:
    port = free_port()
    conf = workdir / "h2.meshbatch.yaml"
    conf.write_text(meshbatch_h2_conf(port, upstream_port, codec))
    argv = [*cores.prefix("proxy"), peers.meshbatch_bin(), "run", "--config", str(conf)]
    service = Service("meshbatch", argv, workdir)
    wait_h2(h2load, service, port)
    return Peer("meshbatch", port, service)
