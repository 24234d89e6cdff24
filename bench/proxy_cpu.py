"""CPU time per proxied request with no sockets: a listener's connection and one idle upstream connection on
in-memory transports, driven request by request. It isolates the proxy's own work from the kernel and the load
generator, so two builds can be compared on a shared machine (`meshbatch bench proxy` measures the whole).

    PYTHONPATH=.venv/compiled .venv/bin/python bench/proxy_cpu.py          # the compiled build
    .venv/bin/python bench/proxy_cpu.py --requests 20000 --rounds 7       # the pure build

Prints the best and the median of the rounds, in microseconds of process CPU time per request.

Instructions per request, repeatable whatever else the machine runs: `--only N` sends N requests and prints
nothing; under callgrind, the difference of two N gives the proxy's instructions per request (start-up cancels):

    for n in 1000 6000; do PYTHONPATH=.venv/compiled valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        .venv/bin/python -m bench.proxy_cpu --only $n 2>&1 | grep refs; done

`--hop` sends the requests an inbound sidecar gets from another proxy instead: each with its own `x-request-id`
and `traceparent`, and `x-forwarded-for`, `x-forwarded-proto` and `via` (no two heads alike in a row of 1,024).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

from meshbatch.http.client import UpstreamConnection
from meshbatch.http.server import HttpServerProtocol, ListenerState
from meshbatch.runtime.app import Proxy

CONFIG = """
listeners:
  - name: main
    listen: 127.0.0.1:0
    routes:
      - name: all
        match: {path_prefix: /}
        cluster: up
clusters:
  - name: up
    endpoints: [127.0.0.1:9]
"""
REQUEST = b"GET /x HTTP/1.1\r\nHost: svc\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n"
HOP = [b"GET /x HTTP/1.1\r\nHost: svc\r\nUser-Agent: wrk\r\nAccept: */*\r\nX-Request-Id: %032x\r\n"
       b"Traceparent: 00-%032x-%016x-01\r\nX-Forwarded-For: 10.0.0.7\r\nX-Forwarded-Proto: http\r\n"
       b"Via: 1.1 meshbatch\r\n\r\n" % (i * 7919, i * 104729, i) for i in range(1024)]
ANSWER = (b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n"
          b"Connection: keep-alive\r\n\r\nhello world\n")


class MemoryTransport(asyncio.Transport):
    """Keeps what is written; never pushes back."""

    def __init__(self) -> None:
        super().__init__()
        self.out: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.out.append(bytes(data))

    def writelines(self, chunks: Any) -> None:
        self.out.extend(bytes(c) for c in chunks)

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8080)}.get(name, default)

    def pause_reading(self) -> None:
        return None

    def resume_reading(self) -> None:
        return None

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        return None


async def measure(requests: int, rounds: int, only: int = 0, hop: bool = False) -> list[float]:
    loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "proxy.yaml"
        path.write_text(CONFIG)
        proxy = Proxy(path, loop, announce=lambda line: None)
    listener = proxy.snapshot.config.listeners[0]
    server = HttpServerProtocol(ListenerState(proxy._listener_settings(listener, proxy.snapshot)), loop)
    downstream = MemoryTransport()
    server.connection_made(downstream)
    conn = UpstreamConnection(loop, 1 << 20)
    upstream = MemoryTransport()
    conn.connection_made(upstream)
    conn.pooled = True
    proxy.snapshot.clusters["up"].endpoints[0].pool.release(conn)

    heads = HOP if hop else [REQUEST]
    sent = [0]

    def one() -> None:
        sent[0] += 1
        server.data_received(heads[sent[0] % len(heads)])
        conn.data_received(ANSWER)

    if only:
        for _ in range(only):
            one()
            if len(downstream.out) > 100:
                downstream.out.clear()
                upstream.out.clear()
        return []
    for _ in range(2000):
        one()
    await asyncio.sleep(0)
    if not downstream.out or b"hello world" not in downstream.out[-1]:
        raise SystemExit(f"the proxy did not answer as expected: {downstream.out[-1:]!r}")
    if len(upstream.out) < 2000:
        raise SystemExit("requests took the general path: the fast path is not measured")
    results = []
    for _ in range(rounds):
        downstream.out.clear()
        upstream.out.clear()
        gc.collect()
        start = time.process_time()
        for _ in range(requests):
            one()
        results.append((time.process_time() - start) / requests * 1e6)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", type=int, default=0, metavar="N",
                        help="send N requests and print nothing (for callgrind's instruction counts)")
    parser.add_argument("--hop", action="store_true", help="requests as they come through another proxy")
    args = parser.parse_args()
    results = uvloop.run(measure(args.requests, args.rounds, args.only, args.hop))
    if args.only:
        return
    import meshbatch.http.server as server_module
    from meshbatch.telemetry.build import is_compiled

    build = "compiled" if is_compiled(server_module.__file__) else "pure"
    print(f"{build} build: best {min(results):.2f} us, median {statistics.median(results):.2f} us of CPU per "
          f"request ({args.rounds} rounds x {args.requests})")


if __name__ == "__main__":
    main()
