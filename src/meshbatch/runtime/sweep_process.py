"""One sweep of a route's recorded traffic in a process of its own (`python -m meshbatch.tools.tune.worker`),
never on the event loop: the request goes to its stdin, its answer comes from its stdout.

Bounded: the process is killed after `timeout` seconds (and when the task awaiting it is cancelled: a reload that
replaced the route, a drain); it bounds its own address space (`memory_mb`) and lowers its priority. Whatever goes
wrong (it crashed, hung, ran out of memory, answered something that is not a JSON object) is a `SweepFailed`
with the reason, for the search's backoff and the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Sequence
from typing import Any

import orjson

WORKER = (sys.executable, "-m", "meshbatch.tools.tune.worker")
MAX_ANSWER = 16 << 20  # bytes read from its stdout at most


class SweepFailed(Exception):
    """A sweep gave no answer: why."""


async def run_sweep(request: dict[str, Any], timeout: float, memory_mb: int,
                    command: Sequence[str] = WORKER) -> dict[str, Any]:
    """The worker's answer to `request`; raises SweepFailed."""
    payload = orjson.dumps(request)
    try:
        process = await asyncio.create_subprocess_exec(
            *command, str(memory_mb), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, limit=MAX_ANSWER)
    except OSError as exc:
        raise SweepFailed(f"could not start: {exc}") from None
    try:
        async with asyncio.timeout(timeout):
            out, err = await process.communicate(payload)
    except TimeoutError:
        raise SweepFailed(f"killed after {timeout:g} s") from None
    finally:
        if process.returncode is None:  # timed out, or the task was cancelled: the process goes with it
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            with contextlib.suppress(Exception):
                await asyncio.shield(process.wait())
    if process.returncode != 0:
        reason = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no message"]
        raise SweepFailed(f"exit status {process.returncode}: {reason[0][:300]}")
    if len(out) > MAX_ANSWER:
        raise SweepFailed(f"an answer of {len(out)} bytes")
    try:
        answer = orjson.loads(out)
    except orjson.JSONDecodeError as exc:
        raise SweepFailed(f"an answer that is not JSON: {exc}") from None
    if not isinstance(answer, dict):
        raise SweepFailed("an answer that is not a JSON object")
    return answer


__all__ = ["WORKER", "SweepFailed", "run_sweep"]
