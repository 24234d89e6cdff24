"""The supervisor of `meshbatch run --workers N`: N worker processes on the same ports, one admin view.

- Start: the config is validated once, in a child process (errors with their paths, as without workers), the
  listeners' ports are bound and held (ports.py), the admin address is served here (admin.py), and N workers
  start, each today's proxy (`meshbatch run` with its config adapted: role.py) from that validated config (its
  JSON handed over in an unlinked file: no validating child per worker). `ready` is announced when every worker is
  ready; a worker that exits before it was ready stops the start (its own lines on stderr say why) and the exit
  status is 1.
- SIGHUP: every worker reloads the file, each validating it in a child of its own (as today: a config with errors
  is rejected and the old one keeps serving); the supervisor announces `reloaded` when every worker did, else
  `reload rejected` with the counts. A worker started again validates the file in a child too.
- SIGTERM, SIGINT: every worker drains with today's guarantees (stop accepting, flush batches, finish requests in
  flight within `drain_timeout_ms`, ingest logs closed); the supervisor exits after the last one, with status 0.
- A worker that dies is started again (policy.py: bounded backoff), counted in
  `meshbatch_worker_restarts_total{worker}`. The connections it held die with it: their clients see the connection
  reset or closed, never a hang; connections the kernel had queued on its listening socket but it had not accepted
  are reset too, unless `net.ipv4.tcp_migrate_req=1` (Linux 5.14+) hands them to another worker.
- The supervisor's death: each worker sees its line to the supervisor close and drains.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from meshbatch.config import plain
from meshbatch.http.server import ListenerState, ServerSettings, serve_handler
from meshbatch.http2.accept import protocol_factory
from meshbatch.runtime.announce import announce_line
from meshbatch.runtime.validation import validate
from meshbatch.runtime.workers.admin import WorkersAdmin
from meshbatch.runtime.workers.member import Member
from meshbatch.runtime.workers.merge_metrics import Family
from meshbatch.runtime.workers.policy import RestartPolicy
from meshbatch.runtime.workers.ports import hold_ports
from meshbatch.runtime.workers.role import WorkerRole, stranded_logs
from meshbatch.upstream.endpoint import split_address

log = logging.getLogger("meshbatch.workers")
KILL_AFTER_DRAIN = 10.0  # seconds past drain_timeout_ms before a worker that has not exited is killed


class StartFailed(RuntimeError):
    """A worker exited before it was ready: the proxy does not start."""


class Supervisor:
    def __init__(self, config_path: str | Path, count: int, loop: asyncio.AbstractEventLoop, log_level: str = "info",
                 announce: Callable[[str], None] = announce_line, policy: RestartPolicy | None = None,
                 config: plain.Config | None = None) -> None:
        self.config_path = str(config_path)
        self.count = count
        self.loop = loop
        self.log_level = log_level
        self.announce = announce
        self.policy = policy or RestartPolicy()
        # validated once, here, in a child process (errors with their paths), unless `run` did it already
        self.config: plain.Config = config if config is not None else validate(self.config_path)
        self.members = [Member(i) for i in range(count)]
        self.draining = False
        self.version = 1  # as a single proxy counts its snapshots: 1, then each reload every worker made
        self._starting = True
        self._done = asyncio.Event()
        self._failed: asyncio.Future[int] = loop.create_future()
        self._listen: dict[str, str] = {}
        self._held: list[socket.socket] = []
        self._admin_server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[object]] = set()
        self._reloading = asyncio.Lock()

    # start ---------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._listen, self._held = hold_ports(self.config)
        admin = self.config.admin
        if admin is not None:
            view = WorkersAdmin(admin, lambda: self.members, lambda: self.draining, self.own_metrics)
            state = ListenerState(ServerSettings(dispatch=serve_handler(view, self.loop), header_timeout=5,
                                                 idle_timeout=30, codec="http1"))
            host, port = split_address(admin.listen)
            self._admin_server = await self.loop.create_server(protocol_factory(state, self.loop), host, port,
                                                               reuse_address=True)
            self._announce_address("admin", self._admin_server.sockets[0].getsockname())
        handed = plain.encode(self.config)  # validated here once: the workers start from it, no child each
        for member in self.members:
            await self._spawn(member, handed)
        ready: asyncio.Future[Any] = asyncio.gather(*(self._until_ready(m) for m in self.members))
        failed: asyncio.Future[Any] = self._failed
        done, _ = await asyncio.wait([ready, failed], return_when=asyncio.FIRST_COMPLETED)
        if self._failed in done:
            ready.cancel()
            await self._stop_all(signal.SIGKILL)
            self._close()
            raise StartFailed(f"worker {self._failed.result()} exited before it was ready (its lines above say why)")
        self._starting = False
        for listener in self.config.listeners:
            self.announce(f"meshbatch: listening name={listener.name} "
                          f"address={self._listen[f'{listener.name} {listener.listen}']}")
        for sig, handler in ((signal.SIGTERM, self.drain), (signal.SIGINT, self.drain), (signal.SIGHUP, self.reload)):
            self.loop.add_signal_handler(sig, lambda h=handler: self._task(h()))  # type: ignore[misc]
        for path in stranded_logs(self.config, self.count):
            self.announce(f"meshbatch: WARNING: {path} is the ingest log of a worker this run does not have (fewer "
                          "workers than before): its events wait there until a run with as many workers delivers "
                          "them")
        self.announce(f"meshbatch: ready config={self.config_path} version={self.version} workers={self.count} "
                      f"pid={os.getpid()}")

    def _announce_address(self, name: str, sock: tuple[str, int]) -> None:
        address = f"[{sock[0]}]:{sock[1]}" if ":" in sock[0] else f"{sock[0]}:{sock[1]}"
        self.announce(f"meshbatch: listening name={name} address={address}")

    async def _until_ready(self, member: Member) -> None:
        while not member.ready:
            await asyncio.sleep(0.02)

    def _task(self, coro: object) -> None:
        task: asyncio.Task[object] = self.loop.create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _spawn(self, member: Member, handed: bytes | None = None) -> None:
        """Start worker `member`; `handed`: the validated config's JSON it starts from (an unlinked file)."""
        with contextlib.ExitStack() as stack:
            held = stack.enter_context(tempfile.TemporaryFile()) if handed is not None else None
            if held is not None and handed is not None:
                held.write(handed)
                held.seek(0)
            ours, theirs = socket.socketpair()
            stack.callback(theirs.close)
            role = WorkerRole(member.index, self.count, theirs.fileno(), self._listen,
                              held.fileno() if held is not None else -1)
            fds = (theirs.fileno(),) if held is None else (theirs.fileno(), held.fileno())
            try:
                process = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "meshbatch", "--log-level", self.log_level, "run", self.config_path,
                    "--worker", role.encode(), stdin=asyncio.subprocess.DEVNULL, pass_fds=fds)
            except BaseException:
                ours.close()
                raise
        member.process, member.pid = process, process.pid
        member.ready, member.admin, member.started_at = False, None, self.loop.time()
        self._task(self._read_lines(member, ours))
        self._task(self._watch(member, process))

    async def _read_lines(self, member: Member, sock: socket.socket) -> None:
        reader, writer = await asyncio.open_connection(sock=sock)
        try:
            while line := await reader.readline():
                self._on_line(member, line.decode("utf-8", "replace").rstrip("\n"))
        finally:
            writer.close()

    def _on_line(self, member: Member, line: str) -> None:
        message = line.partition(": ")[2]
        word, _, rest = message.partition(" ")
        fields = dict(part.split("=", 1) for part in rest.split() if "=" in part)
        if word == "listening" and fields.get("name") == "admin":
            member.admin = fields.get("address")
        elif word == "ready":
            member.ready = True
        elif word in ("reloaded", "reload") and member.reload is not None and not member.reload.done():
            member.reload.set_result(word == "reloaded")
        elif word == "drained":
            member.unfinished = int(fields.get("unfinished", "0") or 0)

    async def _watch(self, member: Member, process: asyncio.subprocess.Process) -> None:
        code = await process.wait()
        if member.process is not process:
            return
        member.ready = False
        if member.reload is not None and not member.reload.done():
            member.reload.set_result(False)
        if self._starting:
            if not self._failed.done():
                self._failed.set_result(member.index)
            return
        if self.draining:
            return
        delay = self.policy.delay(member.index, member.started_at, self.loop.time())
        member.restarts += 1
        self.announce(f"meshbatch: WARNING: worker {member.index} (pid {process.pid}) exited with status {code}: "
                      f"started again in {delay:.1f}s (restart {member.restarts})")
        await asyncio.sleep(delay)
        while not self.draining:
            try:
                await self._spawn(member)
                return
            except OSError as exc:  # no process could be made (out of processes, memory or descriptors)
                delay = self.policy.delay(member.index, member.started_at, self.loop.time())
                log.error("worker %d could not be started (%s): trying again in %.1fs", member.index, exc, delay)
                await asyncio.sleep(delay)

    # reload --------------------------------------------------------------------------------------
    async def reload(self) -> None:
        async with self._reloading:  # one SIGHUP at a time, as in one proxy
            await self._reload()

    async def _reload(self) -> None:
        if self.draining:
            return
        futures: list[asyncio.Future[bool]] = []
        for member in self.members:
            if member.process is None or member.process.returncode is not None or not member.ready:
                continue
            member.reload = fut = self.loop.create_future()
            futures.append(fut)
            if not _signal(member.process, signal.SIGHUP):
                fut.set_result(False)
        # A worker's reload is bounded (its ingest handover by drain_timeout_ms): one that does not answer by then
        # counts as rejected.
        wait = self.config.drain_timeout_ms / 1000 + KILL_AFTER_DRAIN
        results = [not fut.cancelled() and fut.result() for fut in await _settled(futures, wait)]
        ok = sum(results)
        if results and ok == len(results):
            self.version += 1
            self.announce(f"meshbatch: reloaded version={self.version} workers={ok}")
        else:
            self.announce(f"meshbatch: reload rejected workers_reloaded={ok} workers_rejected={len(results) - ok}")

    # drain ---------------------------------------------------------------------------------------
    async def drain(self) -> None:
        if self.draining:
            return
        self.draining = True
        timeout = self.config.drain_timeout_ms / 1000
        self.announce(f"meshbatch: draining workers={self.count} timeout={timeout}s")
        await self._stop_all(signal.SIGTERM, timeout + KILL_AFTER_DRAIN)
        self._close()
        unfinished = sum(m.unfinished for m in self.members)
        self.announce(f"meshbatch: drained unfinished={unfinished}")
        self._done.set()

    async def _stop_all(self, sig: int, kill_after: float = 5.0) -> None:
        processes = [m.process for m in self.members if m.process is not None and m.process.returncode is None]
        for process in processes:
            _signal(process, sig)
        waits = asyncio.gather(*(p.wait() for p in processes))
        try:
            await asyncio.wait_for(asyncio.shield(waits), kill_after)
        except TimeoutError:
            for process in processes:
                if process.returncode is None:
                    log.error("worker pid %d did not exit %.0fs after %s: killed", process.pid, kill_after,
                              signal.Signals(sig).name)
                    _signal(process, signal.SIGKILL)
            await waits

    def _close(self) -> None:
        if self._admin_server is not None:
            self._admin_server.close()
        for sock in self._held:
            sock.close()

    async def wait_closed(self) -> None:
        await self._done.wait()

    # metrics -------------------------------------------------------------------------------------
    def own_metrics(self) -> list[Family]:
        restarts = Family("meshbatch_worker_restarts", "Worker processes started again after dying, by worker.",
                          "counter")
        for m in self.members:
            restarts.samples[("meshbatch_worker_restarts_total", (("worker", str(m.index)),))] = float(m.restarts)
        workers = Family("meshbatch_workers", "Worker processes by state (ready, or starting).", "gauge")
        ready = sum(1 for m in self.members if m.ready)
        workers.samples[("meshbatch_workers", (("state", "ready"),))] = float(ready)
        workers.samples[("meshbatch_workers", (("state", "starting"),))] = float(self.count - ready)
        return [restarts, workers]


def _signal(process: asyncio.subprocess.Process, sig: int) -> bool:
    """Send `sig` to a worker; False when it is already gone (it died at that moment: its watch sees it)."""
    try:
        process.send_signal(sig)
    except ProcessLookupError:
        return False
    return True


async def _settled(futures: list[asyncio.Future[bool]], timeout: float) -> list[asyncio.Future[bool]]:
    """`futures` once every one is done or `timeout` passed (those still pending are cancelled)."""
    if futures:
        _, pending = await asyncio.wait(futures, timeout=timeout)
        for fut in pending:
            fut.cancel()
    return futures


async def supervise(config_path: str | Path, count: int, log_level: str = "info",
                    config: plain.Config | None = None) -> int:
    supervisor = Supervisor(config_path, count, asyncio.get_running_loop(), log_level, config=config)
    await supervisor.start()
    await supervisor.wait_closed()
    return 0


__all__ = ["StartFailed", "Supervisor", "supervise"]
