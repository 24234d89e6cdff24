"""A worker's side of `meshbatch run --workers N`: what it changes in the config it loads, and its line to the
supervisor.

Every config a worker loads (at start and on each reload) is adapted (`adapt`):
- every listener binds with SO_REUSEPORT (`reuse_port: true`), at the port the supervisor resolved for it (a
  listener at port 0 gets one port for all the workers: the supervisor binds it first and keeps it);
- the admin listener is private to the worker (127.0.0.1, a port of the system's choosing): the supervisor serves
  the configured admin address and reads each worker's;
- an ingest route's SQLite log is the worker's own (one writer per file, as the log's design assumes): worker 0
  keeps the configured path (so a proxy going from one worker to several keeps delivering its backlog), worker i
  writes `NAME.wI.db` beside it (`log_path`). Each worker's flusher delivers its own log: every acknowledged event is
  delivered once. A JetStream log is shared as by replicas (one durable consumer).

The line to the supervisor is one end of a socket pair: the worker writes its lifecycle lines there (`listening`,
`ready`, `reloaded`, `drained` ...), and the supervisor's end closing (the supervisor died) drains the worker.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from msgspec.structs import replace

from meshbatch.config import plain
from meshbatch.config.plain.routes import IngestRoute
from meshbatch.runtime.announce import announce_line

log = logging.getLogger("meshbatch.workers")
PRIVATE_ADMIN = "127.0.0.1:0"


@dataclass(frozen=True, slots=True)
class WorkerRole:
    index: int
    count: int
    fd: int = -1  # the worker's end of its socket pair with the supervisor (-1: none)
    listen: dict[str, str] = field(default_factory=dict)  # "NAME LISTEN" -> the address with its resolved port
    # A file holding the config the supervisor validated, as JSON (at the first start: the worker then starts no
    # validating child of its own); -1: the worker validates the file itself (a worker started again, a reload)
    config_fd: int = -1

    def encode(self) -> str:
        return json.dumps({"index": self.index, "count": self.count, "fd": self.fd, "listen": self.listen,
                           "config_fd": self.config_fd})

    @classmethod
    def decode(cls, text: str) -> WorkerRole:
        data: dict[str, Any] = json.loads(text)
        return cls(int(data["index"]), int(data["count"]), int(data.get("fd", -1)),
                   {str(k): str(v) for k, v in data.get("listen", {}).items()}, int(data.get("config_fd", -1)))

    def validated(self) -> plain.Config | None:
        """The config the supervisor handed over (None: none; the worker validates the file itself)."""
        if self.config_fd < 0:
            return None
        with os.fdopen(self.config_fd, "rb") as handed:
            return plain.decode(handed.read())


def log_path(path: str, index: int) -> str:
    """Worker `index`'s SQLite ingest log: the path itself for worker 0, `NAME.wI.EXT` beside it for the others."""
    if index == 0:
        return path
    head, sep, tail = path.rpartition("/")
    stem, dot, ext = tail.rpartition(".")
    name = f"{stem}.w{index}.{ext}" if dot and stem else f"{tail}.w{index}"
    return f"{head}{sep}{name}"


def default_log_path(route: str) -> str:
    return os.path.join("meshbatch-data", f"ingest-{route}.db")


def stranded_logs(config: plain.Config, count: int) -> list[str]:
    """SQLite ingest logs of worker indexes `count` and above (left by a run with more workers), that exist."""
    import glob
    import re

    out: list[str] = []
    for listener in config.listeners:
        for route in listener.routes:
            if isinstance(route, IngestRoute) and route.ingest.log.backend == "sqlite":
                probe = log_path(route.ingest.log.path or default_log_path(route.name), 999_999)
                head, _, tail = probe.partition("999999")
                for path in sorted(glob.glob(glob.escape(head) + "*" + glob.escape(tail))):
                    index = path[len(head):len(path) - len(tail)]
                    if re.fullmatch(r"[0-9]+", index) and int(index) >= count:
                        out.append(path)
    return out


def _route(route: plain.AnyRoute, index: int) -> plain.AnyRoute:
    if not isinstance(route, IngestRoute) or route.ingest.log.backend != "sqlite":
        return route
    ingest = route.ingest
    path = log_path(ingest.log.path or default_log_path(route.name), index)
    log_block = replace(ingest.log, path=path)
    return replace(route, ingest=replace(ingest, log=log_block))


def adapt(config: plain.Config, role: WorkerRole) -> plain.Config:
    """`config` as worker `role` runs it (see the module's text)."""
    listeners = [
        replace(lst, reuse_port=True, listen=role.listen.get(f"{lst.name} {lst.listen}", lst.listen),
                routes=[_route(r, role.index) for r in lst.routes])
        for lst in config.listeners
    ]
    admin = config.admin or plain.Admin()
    return replace(config, listeners=listeners, admin=replace(admin, listen=PRIVATE_ADMIN))


class SupervisorLine:
    """The worker's lifecycle lines: on stderr as `meshbatch.worker.I: ...` and to the supervisor as they are."""

    def __init__(self, role: WorkerRole) -> None:
        self.role = role
        self.sock = socket.socket(fileno=role.fd) if role.fd >= 0 else None

    def announce(self, line: str) -> None:
        name, _, message = line.partition(": ")
        announce_line(f"{name}.worker.{self.role.index}: {message}")
        if self.sock is not None:
            try:
                self.sock.sendall(line.encode() + b"\n")
            except OSError:  # the supervisor is gone: the watch below drains this worker
                pass

    def watch(self, loop: asyncio.AbstractEventLoop, on_lost: Callable[[], object]) -> None:
        """Call `on_lost` when the supervisor's end closes (the supervisor exited or died)."""
        sock = self.sock
        if sock is None:
            return
        sock.setblocking(False)

        def readable() -> None:
            try:
                data = sock.recv(4096)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                loop.remove_reader(sock.fileno())
                log.warning("worker %d: the supervisor is gone: draining", self.role.index)
                on_lost()

        loop.add_reader(sock.fileno(), readable)


__all__ = ["PRIVATE_ADMIN", "SupervisorLine", "WorkerRole", "adapt", "log_path", "stranded_logs"]
