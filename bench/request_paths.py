"""Which meshbatch files and functions one request of each kind crosses: a plain request, a batched one, and an
ingested event (until its delivery to the sink), each profiled once after warm-up through an in-process proxy
in front of an in-process upstream. The structure of the request paths, measured rather than drawn.

    .venv/bin/python bench/request_paths.py            # this checkout
    .venv/bin/python bench/request_paths.py --src DIR  # another checkout's src/ (to compare before and after)
    .venv/bin/python bench/request_paths.py --list     # also every file and the functions called in it
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import uvloop

PORT, UPSTREAM_PORT = 18090, 18091
CONFIG = """
listeners:
  - name: main
    listen: 127.0.0.1:{port}
    routes:
      - name: plain
        match: {{path_prefix: /plain}}
        cluster: up
      - name: batch
        match: {{path_prefix: /batch, methods: [POST]}}
        cluster: up
        batch: {{max_items: 8, max_wait_ms: 1, codec: json-array, upstream_path: /batch}}
      - name: ingest
        match: {{path_prefix: /ingest, methods: [POST]}}
        ingest:
          ack: fsync
          log: {{backend: sqlite, path: {folder}/log.db}}
          sink: {{type: sqlite, path: {folder}/sink.db, table: events}}
clusters:
  - name: up
    endpoints: [127.0.0.1:{upstream}]
"""
# (name, method, path, body, seconds to keep profiling after the answer: an event's delivery comes later)
KINDS = [("plain", b"GET", b"/plain/x", b"", 0.0), ("batch", b"POST", b"/batch", b'{"a": 1}', 0.0),
         ("ingest", b"POST", b"/ingest", b'{"a": 1}', 0.5)]
PERIODIC = ("telemetry/loop", "admin/")  # timers that may fire meanwhile, not part of any request


async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            body = await reader.readexactly(length) if length else b""
            out = body if head.startswith(b"POST /batch") else b"ok"
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                         % (len(out), out))
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
        writer.close()


async def one(method: bytes, path: bytes, body: bytes) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", PORT)
    writer.write(b"%s %s HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                 % (method, path, len(body), body))
    head = await reader.readuntil(b"\r\n\r\n")
    writer.close()
    return head.split(b"\r\n")[0].decode()


async def measure(src: Path) -> dict[str, Any]:
    from meshbatch.runtime.app import Proxy

    package = str(src / "meshbatch") + os.sep
    seen: dict[str, set[str]] = {}

    def profile(frame: FrameType, event: str, arg: object) -> None:
        if event == "call" and frame.f_code.co_filename.startswith(package):
            seen.setdefault(frame.f_code.co_filename[len(package):], set()).add(frame.f_code.co_name)

    server = await asyncio.start_server(upstream, "127.0.0.1", UPSTREAM_PORT)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "proxy.yaml"
        config.write_text(CONFIG.format(port=PORT, upstream=UPSTREAM_PORT, folder=folder))
        proxy = Proxy(config, asyncio.get_running_loop(), announce=lambda line: None)
        await proxy.start()
        for name, method, path, body, after in KINDS:
            for _ in range(3):
                await one(method, path, body)
            await asyncio.sleep(0.6)
            seen.clear()
            sys.setprofile(profile)
            threading.setprofile(profile)  # the SQLite sink writes on a thread
            status = await one(method, path, body)
            await asyncio.sleep(after)
            sys.setprofile(None)
            threading.setprofile(None)  # type: ignore[arg-type]
            files = {f: sorted(fns) for f, fns in sorted(seen.items()) if not f.startswith(PERIODIC)}
            results[name] = {"status": status, "files": len(files),
                             "functions": sum(len(v) for v in files.values()), "by_file": files}
        await proxy.drain()
    server.close()
    await server.wait_closed()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", type=Path, default=Path(__file__).resolve().parent.parent / "src",
                        help="the src/ folder to measure (default: this checkout's)")
    parser.add_argument("--list", action="store_true", help="print every file and the functions called in it")
    parser.add_argument("--json", action="store_true", help="the whole result as JSON")
    args = parser.parse_args()
    sys.path.insert(0, str(args.src.resolve()))
    results = uvloop.run(measure(args.src.resolve()))
    if args.json:
        print(json.dumps(results, indent=1))
        return
    for name, found in results.items():
        print(f"{name}: {found['files']} files, {found['functions']} functions ({found['status']})")
        if args.list:
            for file, functions in found["by_file"].items():
                print(f"  {file}: {', '.join(functions)}")


if __name__ == "__main__":
    main()
