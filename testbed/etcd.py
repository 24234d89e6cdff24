"""A single-node etcd of the test's own (Debian's `etcd-server`, /usr/bin/etcd): its own data directory, free
ports on a chosen address (loopback by default; a bridge address when namespaces must reach it), and the v3
HTTP/JSON gateway for writes (`put`, `delete`). `stop` then `start` keeps its data."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from testbed.fleet import free_port


def etcd_binary() -> str | None:
    """The `etcd` binary, or None (apt-get install etcd-server)."""
    return shutil.which("etcd") or ("/usr/bin/etcd" if Path("/usr/bin/etcd").exists() else None)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class Etcd:
    def __init__(self, folder: Path, host: str = "127.0.0.1", prefix: str = "") -> None:
        binary = etcd_binary()
        if binary is None:
            raise RuntimeError("etcd is not installed (apt-get install etcd-server; `make system-deps`)")
        self.binary = binary
        self.folder = folder
        self.host = host
        self.prefix = prefix
        self.client = free_port()
        self.peer = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.client}"

    def start(self, timeout: float = 15.0) -> Etcd:
        self.folder.mkdir(parents=True, exist_ok=True)
        peer = f"http://{self.host}:{self.peer}"
        with (self.folder / "etcd.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "--name", "test", "--data-dir", str(self.folder / "data"),
                 "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
                 "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                 "--initial-cluster", f"test={peer}", "--log-level", "error"],
                stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.call("/v3/kv/range", {"key": b64("x")})
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    log = (self.folder / "etcd.log").read_text()[-2000:]
                    raise RuntimeError(f"etcd did not start:\n{log}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def __enter__(self) -> Etcd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def call(self, path: str, payload: dict[str, Any]) -> Any:
        request = urllib.request.Request(self.url + path, data=json.dumps(payload).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=3) as answer:
            return json.loads(answer.read())

    def put(self, key: str, value: str) -> None:
        """`value` under `prefix + key`."""
        self.call("/v3/kv/put", {"key": b64(self.prefix + key), "value": b64(value)})

    def delete(self, key: str) -> None:
        self.call("/v3/kv/deleterange", {"key": b64(self.prefix + key)})


__all__ = ["Etcd", "b64", "etcd_binary"]
