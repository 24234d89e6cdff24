"""The processes of the proxy scenario: an nginx upstream, and nginx, haproxy and meshbatch as proxies to it.

Each gets a private config in the run's temp directory, an ephemeral loopback port, one worker, and its core.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from .common import (
    LOOPBACK,
    BenchError,
    CorePlan,
    Service,
    find_tool,
    free_port,
    process_tree,
    tool_version,
    wait_ready,
)

BODY = b"ok"


@dataclass
class Peer:
    """Something wrk can be pointed at: a proxy under test, or the upstream itself (the no-proxy baseline)."""

    name: str
    port: int
    service: Service | None  # None for the baseline: its process is the upstream, not a proxy under test
    companions: tuple[Service, ...] = ()  # the other processes of the system under test (a sidecar pair's inbound)

    def services(self) -> list[Service]:
        return [s for s in (self.service, *self.companions) if s is not None]

    def pids(self) -> list[int]:
        return [pid for service in self.services() for pid in process_tree(service.pid)]


def _nginx_common(workdir: Path, tag: str) -> str:
    """Main context: one worker in the foreground (pinned by taskset), pid and logs in the run's directory."""
    (workdir / f"{tag}-tmp").mkdir(mode=0o755, exist_ok=True)
    return f"""
worker_processes 1;
daemon off;
master_process on;
pid {workdir}/{tag}.pid;
error_log {workdir}/{tag}.error.log warn;
events {{ worker_connections 8192; multi_accept on; }}
"""


def _nginx_http_common(workdir: Path, tag: str) -> str:
    tmp = workdir / f"{tag}-tmp"
    return f"""
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    keepalive_requests 10000000;
    keepalive_timeout 75s;
"""


def nginx_pool(name: str, port: int) -> str:
    """An nginx upstream block: one server, a keep-alive pool of connections reused across clients."""
    return f"""
    upstream {name} {{
        server {LOOPBACK}:{port};
        keepalive 256;
        keepalive_requests 10000000;
        keepalive_timeout 75s;
    }}"""


def nginx_upstream_conf(workdir: Path, port: int) -> str:
    """An nginx answering every request with a fixed 2-byte body, keep-alive on."""
    return (
        _nginx_common(workdir, "upstream")
        + "http {"
        + _nginx_http_common(workdir, "upstream")
        + f"""
    server {{
        listen {LOOPBACK}:{port} backlog=4096;
        location / {{ default_type text/plain; return 200 "{BODY.decode()}"; }}
    }}
}}
"""
    )


def nginx_proxy_conf(workdir: Path, port: int, upstream_port: int) -> str:
    """nginx as a reverse proxy with a keep-alive upstream pool (HTTP/1.1, Connection header cleared)."""
    return (
        _nginx_common(workdir, "nginx")
        + "http {"
        + _nginx_http_common(workdir, "nginx")
        + nginx_pool("bench_upstream", upstream_port)
        + f"""
    server {{
        listen {LOOPBACK}:{port} backlog=4096;
        location / {{
            proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""
    )


# haproxy in HTTP mode, one thread, server-side keep-alive connections reused across clients.
HAPROXY_COMMON = """
global
    nbthread 1
    maxconn 4096

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
"""


def haproxy_conf(port: int, upstream_port: int) -> str:
    return HAPROXY_COMMON + f"""
frontend bench
    bind {LOOPBACK}:{port}
    default_backend upstream

backend upstream
    server up1 {LOOPBACK}:{upstream_port}
"""


def meshbatch_conf(port: int, upstream_port: int) -> str:
    return f"""admin: {{listen: {LOOPBACK}:0}}
listeners:
  - name: bench
    listen: {LOOPBACK}:{port}
    routes:
      - name: all
        match: {{path_prefix: /}}
        cluster: upstream
clusters:
  - name: upstream
    endpoints: [{LOOPBACK}:{upstream_port}]
"""


def meshbatch_bin() -> str:
    """The `meshbatch` next to the running interpreter (the project's .venv), else the one on PATH."""
    override = os.environ.get("MESHBATCH_BIN")
    if override:
        return override
    beside = Path(sys.executable).parent / "meshbatch"
    if beside.is_file():
        return str(beside)
    found = shutil.which("meshbatch")
    if found is None:
        raise BenchError("cannot find the meshbatch command (set MESHBATCH_BIN)")
    return found


def _ready(service: Service, port: int, timeout: float = 20.0) -> Service:
    """Wait until `service` answers on `port`; stop it (never leave it behind) if it does not."""
    try:
        wait_ready(service, port, BODY, timeout=timeout)
    except BaseException:
        service.stop()
        raise
    return service


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def start_upstream(nginx: str, workdir: Path, cores: CorePlan) -> Peer:
    port = free_port()
    conf = _write(workdir / "upstream.nginx.conf", nginx_upstream_conf(workdir, port))
    service = Service("upstream", [*cores.prefix("load"), nginx, "-c", str(conf), "-e", "stderr"], workdir)
    return Peer("no proxy", port, _ready(service, port))


def start_nginx(nginx: str, workdir: Path, cores: CorePlan, upstream_port: int) -> Peer:
    port = free_port()
    conf = _write(workdir / "proxy.nginx.conf", nginx_proxy_conf(workdir, port, upstream_port))
    service = Service("nginx", [*cores.prefix("proxy"), nginx, "-c", str(conf), "-e", "stderr"], workdir)
    return Peer("nginx", port, _ready(service, port))


def start_haproxy(haproxy: str, workdir: Path, cores: CorePlan, upstream_port: int) -> Peer:
    port = free_port()
    conf = _write(workdir / "haproxy.cfg", haproxy_conf(port, upstream_port))
    service = Service("haproxy", [*cores.prefix("proxy"), haproxy, "-db", "-f", str(conf)], workdir)
    return Peer("haproxy", port, _ready(service, port))


def start_meshbatch(workdir: Path, cores: CorePlan, upstream_port: int) -> Peer:
    port = free_port()
    conf = _write(workdir / "meshbatch.yaml", meshbatch_conf(port, upstream_port))
    argv = [*cores.prefix("proxy"), meshbatch_bin(), "run", "--config", str(conf)]
    service = Service("meshbatch", argv, workdir)
    return Peer("meshbatch", port, _ready(service, port, timeout=30.0))


def _meshbatch_version() -> str:
    """The installed version and, in a git checkout, the commit it was measured at."""
    try:
        version = importlib.metadata.version("meshbatch")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    repo = Path(__file__).resolve().parent.parent
    git = shutil.which("git")
    if git and (repo / ".git").exists():
        commit = tool_version([git, "-C", str(repo), "describe", "--always", "--dirty"])
        version += f" ({commit})"
    return version


def versions(tools: dict[str, str]) -> dict[str, str]:
    found: dict[str, str] = {"meshbatch": _meshbatch_version()}
    if "nginx" in tools:
        found["nginx"] = tool_version([tools["nginx"], "-v"])
    if "haproxy" in tools:
        found["haproxy"] = tool_version([tools["haproxy"], "-v"])
    if "wrk" in tools:
        found["wrk"] = tool_version([tools["wrk"], "--version"])
    taskset = find_tool("taskset")
    if taskset:
        found["taskset"] = tool_version([taskset, "--version"])
    return found
