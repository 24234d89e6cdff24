"""One worker of `meshbatch run --workers N`: today's proxy (runtime/app.py) with its config adapted
(role.py), its lifecycle lines sent to the supervisor, and drained when the supervisor goes away."""

from __future__ import annotations

import asyncio
from pathlib import Path

from meshbatch.runtime.app import Proxy
from meshbatch.runtime.settle import settle
from meshbatch.runtime.workers.role import SupervisorLine, WorkerRole, adapt


async def serve_worker(config_path: str | Path, role: WorkerRole) -> int:
    loop = asyncio.get_running_loop()
    line = SupervisorLine(role)
    proxy = Proxy(config_path, loop, announce=line.announce, adapt=lambda config: adapt(config, role),
                  config=role.validated())
    await proxy.start()
    line.watch(loop, lambda: loop.create_task(proxy.drain()))
    settle()  # as `serve` does (runtime/settle.py)
    await proxy.wait_closed()
    return 0


__all__ = ["serve_worker"]
