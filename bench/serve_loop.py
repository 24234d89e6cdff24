"""How the benchmark's upstream scripts run (bench/batch_upstream.py, bench/grpc_upstream.py, each started as
`python bench/NAME.py`, so this is imported as a sibling module): fine timer slack, so that a 2 ms sleep is
2 ms, and a plain selector loop until interrupted."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import selectors
from collections.abc import Coroutine
from typing import Any


def fine_timer_slack() -> None:
    """1 ns of timer slack instead of 50 us (prctl PR_SET_TIMERSLACK); harmless where absent."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(29, 1, 0, 0, 0)


def serve_until_interrupted(server: Coroutine[Any, Any, None]) -> int:
    """Run `server` on a selector loop of its own until it ends or the process is interrupted; exit status 0."""
    fine_timer_slack()
    loop = asyncio.SelectorEventLoop(selectors.SelectSelector())
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(server)
    except KeyboardInterrupt:
        pass
    finally:
        loop.close()
    return 0


__all__ = ["fine_timer_slack", "serve_until_interrupted"]
