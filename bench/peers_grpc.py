"""The processes of the `grpc` scenario.

Two upstreams on the load core:
- `work`: bench/grpc_upstream.py, a grpcio server doing the batching scenario's `fixed` work: `/bench.Work/Get`
  (one item a call) and its batch method (the envelope's `/meshbatch.batch.v1.Batch/Process`, the SDK's
  serve_grpc);
- `static`: an nginx answering every `/bench.Proxy/*` call with one fixed gRPC message and trailers
  `grpc-status: 0` (a static file, POST allowed), fast enough that the proxies, not the upstream, set the pace of
  the proxying comparison.

Two proxies on the proxy core, each with both routes: nginx (`grpc_pass` to both upstreams, keep-alive pools),
and meshbatch (a `codec: grpc` batch route for `/bench.Work/Get`, a plain route for `/bench.Proxy/`, both
clusters `protocol: http2`). Readiness is one gRPC call through each (h2load, gRPC framing).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from . import peers
from .common import LOOPBACK, BenchError, CorePlan, Service, free_port
from .peers import Peer
from .peers_h2 import nginx_h2_listen, nginx_version

BENCH_DIR = Path(__file__).resolve().parent
GET = "/bench.Work/Get"
ECHO = "/bench.Proxy/Echo"
MESSAGE = b"\x00\x00\x00\x00\x02ok"  # one uncompressed gRPC message of 2 bytes
HEADERS = ("content-type: application/grpc", "te: trailers")


def message_file(workdir: Path) -> Path:
    path = workdir / "grpc-message.bin"
    path.write_bytes(MESSAGE)
    return path


def _wait_grpc(h2load: str, service: Service, port: int, path: str, data: Path, timeout: float = 30.0) -> None:
    """Poll with one gRPC call (h2load) until it is answered 200; stop the service on failure."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    argv = [h2load, "-n", "1", "-c", "1", "-d", str(data)]
    for header in HEADERS:
        argv += ["-H", header]
    try:
        while time.monotonic() < deadline:
            if not service.alive():
                raise BenchError(f"{service.name} exited before it was ready:\n{service.log_tail()}")
            done = subprocess.run([*argv, f"http://{LOOPBACK}:{port}{path}"], capture_output=True, text=True,
                                  timeout=10, stdin=subprocess.DEVNULL)
            if "1 succeeded" in done.stdout and "1 2xx" in done.stdout:
                return
            last = (done.stdout + done.stderr).strip()[-300:]
            time.sleep(0.2)
        raise BenchError(f"{service.name} not ready for gRPC within {timeout:.0f}s ({last})\n{service.log_tail()}")
    except BaseException:
        service.stop()
        raise


def start_work(h2load: str, workdir: Path, cores: CorePlan, base_ms: float, per_item_us: float) -> Peer:
    port = free_port()
    argv = [*cores.prefix("load"), sys.executable, str(BENCH_DIR / "grpc_upstream.py"), "--port", str(port),
            "--base-ms", str(base_ms), "--per-item-us", str(per_item_us)]
    service = Service("grpc-work", argv, workdir)
    _wait_grpc(h2load, service, port, GET, message_file(workdir))
    return Peer("direct", port, service)


def _static_conf(workdir: Path, port: int, version: tuple[int, ...]) -> str:
    root = workdir / "grpc-static"
    root.mkdir(mode=0o755, exist_ok=True)
    (root / "answer").write_bytes(MESSAGE)
    return (
        peers._nginx_common(workdir, "grpc-static")
        + "http {"
        + peers._nginx_http_common(workdir, "grpc-static")
        + f"""
    http2_max_concurrent_streams 1024;
    server {{
        {nginx_h2_listen(port, version)}
        location / {{
            root {root};
            default_type application/grpc;
            mirror /read-body;            # the whole request read before the answer (no RST_STREAM after it)
            mirror_request_body on;
            rewrite ^ /answer break;
            add_trailer grpc-status 0 always;
            error_page 405 =200 $uri;   # the static module refuses POST: serve the file all the same
        }}
        location = /read-body {{ internal; return 204; }}
    }}
}}
"""
    )


def start_static(nginx: str, h2load: str, workdir: Path, cores: CorePlan) -> Peer:
    port = free_port()
    conf = workdir / "grpc-static.nginx.conf"
    conf.write_text(_static_conf(workdir, port, nginx_version(nginx)))
    service = Service("grpc-static", [*cores.prefix("load"), nginx, "-c", str(conf), "-e", "stderr"], workdir)
    _wait_grpc(h2load, service, port, ECHO, message_file(workdir))
    return Peer("static", port, service)


def nginx_conf(workdir: Path, port: int, work_port: int, static_port: int, version: tuple[int, ...]) -> str:
    return (
        peers._nginx_common(workdir, "nginx-grpc")
        + "http {"
        + peers._nginx_http_common(workdir, "nginx-grpc")
        + peers.nginx_pool("grpc_work", work_port)
        + peers.nginx_pool("grpc_static", static_port)
        + f"""
    http2_max_concurrent_streams 1024;
    server {{
        {nginx_h2_listen(port, version)}
        location /bench.Work/ {{ grpc_pass grpc://grpc_work; }}
        location /bench.Proxy/ {{ grpc_pass grpc://grpc_static; }}
    }}
}}
"""
    )


def meshbatch_conf(port: int, work_port: int, static_port: int, batch: dict[str, Any]) -> str:
    return f"""admin: {{listen: {LOOPBACK}:0}}
listeners:
  - name: bench
    listen: {LOOPBACK}:{port}
    codec: auto
    routes:
      - name: get
        match: {{path: {GET}}}
        cluster: work
        timeout_ms: {batch["timeout_ms"]}
        batch:
          codec: grpc
          max_items: {batch["max_items"]}
          max_wait_ms: {batch["max_wait_ms"]:g}
          max_in_flight: {batch["max_in_flight"]}
          max_queue: 100000
      - name: proxy
        match: {{path_prefix: /bench.Proxy/}}
        cluster: static
clusters:
  - name: work
    endpoints: [{LOOPBACK}:{work_port}]
    protocol: http2
  - name: static
    endpoints: [{LOOPBACK}:{static_port}]
    protocol: http2
"""


def start_nginx(nginx: str, h2load: str, workdir: Path, cores: CorePlan, work: int, static: int) -> Peer:
    port = free_port()
    conf = workdir / "grpc.nginx.conf"
    conf.write_text(nginx_conf(workdir, port, work, static, nginx_version(nginx)))
    service = Service("nginx", [*cores.prefix("proxy"), nginx, "-c", str(conf), "-e", "stderr"], workdir)
    _wait_grpc(h2load, service, port, ECHO, message_file(workdir))
    return Peer("nginx", port, service)


def start_meshbatch(h2load: str, workdir: Path, cores: CorePlan, work: int, static: int,
                    batch: dict[str, Any]) -> Peer:
    port = free_port()
    conf = workdir / "grpc.meshbatch.yaml"
    conf.write_text(meshbatch_conf(port, work, static, batch))
    service = Service("meshbatch", [*cores.prefix("proxy"), peers.meshbatch_bin(), "run", "--config", str(conf)],
                      workdir)
    _wait_grpc(h2load, service, port, ECHO, message_file(workdir))
    return Peer("meshbatch", port, service)


def _work_call(port: int, method: str) -> bytes:
    import grpc  # the dev environment's grpcio (the bench runs from a checkout's .venv)

    with grpc.insecure_channel(f"{LOOPBACK}:{port}") as channel:
        answer: bytes = channel.unary_unary(f"/bench.Work/{method}")(b"", timeout=10)
        return answer


def work_stats(port: int) -> dict[str, Any]:
    """The work upstream's counters (batch_work.Work.stats: calls, items, sizes, service times)."""
    import json

    stats: dict[str, Any] = json.loads(_work_call(port, "Stats"))
    return stats


def work_reset(port: int) -> None:
    _work_call(port, "Reset")
