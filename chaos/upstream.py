"""Upstream processes that write down every item id they answer, to find duplicates and losses afterwards.

They are the upstream processes of testbed/fleet.py (the tests' too: kill, revive, control
`delay_ms` and `status`, `/_stats`) with one addition: before answering, a request's ids (`{"id": ...}` in a
plain body, each item's id in a `/batch` array) are appended to a file, one per line, with one write(2) per
request. The file outlives the process, so a SIGKILLed upstream's ids are still counted. Plain answers echo the
id: `{"server": NAME, "id": ID}` (batches already echo each item).

Run as `python chaos/upstream.py NAME PORT IDFILE`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson

if __name__ == "__main__":  # as a script its own folder is on sys.path; testbed is in the checkout above it
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from testbed.fleet import Upstream, _Upstream, free_port


class _IdUpstream(_Upstream):
    id_fd = -1

    async def answer(self, method: bytes, url: str, body: bytes) -> tuple[int, object]:
        ids: list[str] = []
        if body and not url.startswith("/_"):
            try:
                doc = orjson.loads(body)
            except orjson.JSONDecodeError:
                doc = None
            if isinstance(doc, list):
                ids = [str(item["id"]) for item in doc if isinstance(item, dict) and "id" in item]
            elif isinstance(doc, dict) and "id" in doc:
                ids = [str(doc["id"])]
        if ids:
            os.write(self.id_fd, ("\n".join(ids) + "\n").encode())
        status, payload = await super().answer(method, url, body)
        if isinstance(payload, dict) and len(ids) == 1 and "server" in payload:
            payload = {**payload, "id": ids[0]}
        return status, payload


def _serve(name: str, port: int, id_file: str) -> None:
    import asyncio

    import uvloop

    _IdUpstream.name = name
    _IdUpstream.id_fd = os.open(id_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_IdUpstream, "127.0.0.1", port, reuse_address=True, backlog=1024)
        print("ready", flush=True)
        await server.serve_forever()

    uvloop.run(main())


@dataclass
class IdUpstream(Upstream):
    """One upstream process (see testbed.fleet.Upstream), recording ids into `id_file`."""

    id_file: Path = Path("ids.log")

    def start(self) -> IdUpstream:
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__)), self.name, str(self.port),
                                      str(self.id_file)],
                                     stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"upstream {self.name} did not start: {line!r}")
        return self

    def revive(self) -> IdUpstream:
        """Start again on the same port (after `kill`), appending to the same id file."""
        return self.start()

    def pause(self) -> None:
        """SIGSTOP: the kernel still accepts connections into the backlog; nothing is read or answered."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)

    def ids(self) -> list[str]:
        try:
            return self.id_file.read_text().split()
        except FileNotFoundError:
            return []

    def lines(self) -> int:
        return len(self.ids())


@dataclass
class IdFleet:
    """Upstreams a, b, c ... each on its own port with its own id file under `folder`."""

    folder: Path
    upstreams: dict[str, IdUpstream] = field(default_factory=dict)

    def start(self, *names: str) -> IdFleet:
        for name in names:
            upstream = IdUpstream(name, free_port(), id_file=self.folder / f"ids-{name}.log")
            self.upstreams[name] = upstream.start()
        return self

    def __getitem__(self, name: str) -> IdUpstream:
        return self.upstreams[name]

    def addresses(self) -> list[str]:
        return [u.address for u in self.upstreams.values()]

    def control(self, **state: int) -> None:
        for upstream in self.upstreams.values():
            upstream.control(**state)

    def id_counts(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for upstream in self.upstreams.values():
            counts.update(upstream.ids())
        return counts

    def close(self) -> None:
        for upstream in self.upstreams.values():
            upstream.resume()
            upstream.kill()


__all__ = ["IdFleet", "IdUpstream", "free_port"]

if __name__ == "__main__":
    _serve(sys.argv[1], int(sys.argv[2]), sys.argv[3])
