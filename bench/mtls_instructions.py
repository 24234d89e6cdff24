"""Instructions per request through the mTLS sidecar pair, for callgrind: the `mtls` scenario's pair (bench/
peers_mtls.py: an outbound sidecar originating mTLS to an inbound sidecar that requires it) in one process, on
real loopback sockets, with a minimal upstream and a client in the same event loop. After a warm-up, `N`
requests go one at a time on each of a few keep-alive connections; run it twice under callgrind and take the
difference, so start-up, handshakes and warm-up cancel out:

    for n in 500 2500; do PYTHONPATH=.venv/compiled valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python -m bench.mtls_instructions $n 2>&1 | grep refs; done   # (difference) / 2000

`--plain` runs the same pair without TLS between the sidecars: the difference of the two figures is what TLS
adds. The client's and the upstream's share (a few thousand instructions a request) is the same for every build
of meshbatch, so differences between builds are meshbatch's own.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
from pathlib import Path

import uvloop

from bench import peers_mtls
from bench.common import free_port
from meshbatch.runtime.app import Proxy

REQUEST = b"GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: wrk\r\n\r\n"
ANSWER = (b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n"
          b"Connection: keep-alive\r\n\r\nok")
TLS_LINES = ("    tls: {mode: strict}\n", f'    tls: {{mode: strict, server_ids: ["{peers_mtls.SERVER_ID}"]}}\n')


class Upstream(asyncio.Protocol):
    """Answers each request head with the same small answer (requests have no bodies here)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.pending = b""

    def data_received(self, data: bytes) -> None:
        self.pending += data
        while b"\r\n\r\n" in self.pending:
            _, self.pending = self.pending.split(b"\r\n\r\n", 1)
            self.transport.write(ANSWER)


async def _client(port: int, count: int, warming: bool = False) -> None:
    """`count` requests one at a time on a connection; while `warming`, answers other than 200 (the first ones
    may time out while the pair's handshakes run slowly under callgrind) are read and let go."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for _ in range(count):
        writer.write(REQUEST)
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            if not warming:
                raise SystemExit(f"unexpected answer: {head!r}")
            length = head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0]
            await reader.readexactly(int(length))
            continue
        await reader.readexactly(2)
    writer.close()


def configs(folder: Path, plain: bool, upstream: int) -> tuple[Path, Path, int]:
    """The inbound and outbound sidecars' config files and the outbound's port."""
    pki = peers_mtls.make_pki(folder)
    out_port, in_port = free_port(), free_port()
    texts = [peers_mtls.meshbatch_inbound_conf(in_port, upstream, pki),
             peers_mtls.meshbatch_outbound_conf(out_port, in_port, pki)]
    if plain:
        for line in TLS_LINES:
            texts = [text.replace(line, "") for text in texts]
    paths = [folder / "inbound.yaml", folder / "outbound.yaml"]
    for path, text in zip(paths, texts, strict=True):
        path.write_text(text)
    return paths[0], paths[1], out_port


async def run(requests: int, connections: int, plain: bool) -> None:
    loop = asyncio.get_running_loop()
    upstream = await loop.create_server(Upstream, "127.0.0.1", 0)
    upstream_port = upstream.sockets[0].getsockname()[1]
    folder = tempfile.mkdtemp(prefix="mtls-instructions-")  # the identities' files are watched while serving
    try:
        inbound_conf, outbound_conf, port = configs(Path(folder), plain, upstream_port)
        proxies = [Proxy(path, loop, announce=lambda line: None) for path in (inbound_conf, outbound_conf)]
        for proxy in proxies:
            await proxy.start()
        await asyncio.gather(*(_client(port, 50, warming=True) for _ in range(connections)))  # handshakes, pools
        await asyncio.gather(*(_client(port, requests // connections) for _ in range(connections)))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    os._exit(0)  # the proxies' listeners and timers need no orderly shutdown here


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("requests", type=int, nargs="?", default=1000)
    parser.add_argument("--connections", type=int, default=4, help="client connections, each one request at a time")
    parser.add_argument("--plain", action="store_true", help="no TLS between the sidecars")
    args = parser.parse_args()
    uvloop.run(run(args.requests, args.connections, args.plain))


if __name__ == "__main__":
    main()
