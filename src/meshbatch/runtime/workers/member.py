"""What the supervisor knows of one worker: its process, its private admin address, whether it is ready."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


@dataclass(slots=True)
class Member:
    index: int
    pid: int = 0
    admin: str | None = None  # its private admin listener, once announced
    ready: bool = False
    started_at: float = 0.0
    restarts: int = 0  # times it was started again after dying
    unfinished: int = 0  # requests its drain left unanswered (its `drained` line)
    reload: asyncio.Future[bool] | None = None  # the answer to the SIGHUP under way
    process: asyncio.subprocess.Process | None = field(default=None, repr=False)

    def info(self) -> dict[str, object]:
        return {"worker": self.index, "pid": self.pid, "ready": self.ready, "admin": self.admin,
                "restarts": self.restarts}


__all__ = ["Member"]
