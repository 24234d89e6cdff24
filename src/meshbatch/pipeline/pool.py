"""The worker processes of one route's pipeline: heavy runs happen there, never on the event loop.

Why processes: the stages are Python (jsonschema is pure Python), so a thread would hold the GIL the event loop
needs; a process has its own. Each worker is `python -m meshbatch.pipeline.worker`, fed the route's pipeline
once, then one request at a time over its stdin/stdout (`wire.py`); a request's body and headers go in, a
compact result comes back (events encoded as JSON, dead letters with reasons, counter increments).

How a request fares:
- it waits in a bounded FIFO queue for an idle worker: a full queue (`max_queue` beyond the idle workers) is an
  immediate 503 `pipeline_overloaded` with Retry-After, and so is a wait longer than `max_queue_ms` (counted
  while some worker is up: a request that arrives while the workers start, or restart, waits for them; if none
  can start, the queue is answered 503 `pipeline_worker_lost`);
- the worker enforces the CPU budget itself (413 `pipeline_cpu_exceeded`, see `worker.py`) and stays;
- a worker that does not answer within `hard_timeout` (wall clock: 4x the budget, at least the budget + 2 s)
  is killed and replaced: if it spent more than the budget computing (work stuck outside Python, where the
  worker's own timer cannot stop it), that request is answered 413 `pipeline_cpu_exceeded`, as the timer would
  have; otherwise (stopped, starved) 503 `pipeline_timeout`. One that dies mid-request (a crash, a kill from
  outside) is replaced too, its request answered 503 `pipeline_worker_lost`. Other requests are unaffected:
  they wait for, or go to, the other workers and the replacement.
Workers start when the pool starts (the proxy starts it with the route) or with its first request; they are
stopped when the pool closes (drain, or a reload that changed the route's pipeline), after the requests
already queued are done. Deadlines are read from an injected clock and checked by `sweep()`, which loop timers
call (tests advance a fake clock and call it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections import deque
from collections.abc import Sequence
from typing import Any

from meshbatch.clock import Clock, LoopClock
from meshbatch.config.plain import PipelineLimits
from meshbatch.errors import Draining
from meshbatch.http.message import Headers
from meshbatch.pipeline import wire
from meshbatch.pipeline.runner import Result
from meshbatch.pipeline.work import BudgetExceeded, PipelineOverloaded, PipelineUnavailable
from meshbatch.telemetry.metrics import Counter

log = logging.getLogger("meshbatch.pipeline")
COMMAND = (sys.executable, "-m", "meshbatch.pipeline.worker")
START_TIMEOUT = 30.0  # a worker that is not ready by then is replaced
STOP_GRACE = 2.0  # after stdin closes, a worker has this long to exit before it is killed
SLACK = 0.005  # timers may fire a hair before the clock agrees
READ_LIMIT = 1 << 20
_BROKEN = (asyncio.IncompleteReadError, ConnectionError, OSError, wire.FrameError)
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float | None:
    """A process's CPU time (user + system) from /proc; None where there is no /proc."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS
    except (OSError, IndexError, ValueError):
        return None


class Job:
    __slots__ = ("frame", "future", "queued_at", "timer")

    def __init__(self, frame: bytes, future: asyncio.Future[Result], queued_at: float) -> None:
        self.frame = frame
        self.future = future
        self.queued_at = queued_at
        self.timer: asyncio.TimerHandle | None = None


class Worker:
    """One worker process, one request at a time."""

    __slots__ = ("cpu", "job", "killed", "process", "started_at")

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.job: Job | None = None
        self.started_at = 0.0
        self.cpu = 0.0  # its CPU seconds when it last answered
        self.killed: str | None = None  # why the pool killed it (cpu, timeout, ...)

    @property
    def alive(self) -> bool:
        return self.process.returncode is None and self.killed is None

    async def exchange(self, data: bytes) -> Any:
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        stdin.write(data)
        await stdin.drain()
        head = await stdout.readexactly(wire.HEADER.size)
        return wire.load(await stdout.readexactly(wire.length(head)))

    def kill(self, why: str) -> None:
        self.killed = self.killed or why
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()

    def close(self) -> None:
        """Ask it to exit (stdin closes: it finishes nothing, it is idle)."""
        if self.process.stdin is not None and not self.process.stdin.is_closing():
            self.process.stdin.close()

    async def reap(self, grace: float) -> None:
        try:
            async with asyncio.timeout(grace):
                await self.process.wait()
        except TimeoutError:
            self.kill("stop")
            await self.process.wait()


class WorkerPool:
    def __init__(self, route: str, spec: dict[str, Any], limits: PipelineLimits, *, clock: Clock | None = None,
                 command: Sequence[str] = COMMAND, hard_timeout: float | None = None,
                 restarts: Counter | None = None) -> None:
        self.route = route
        self.spec = spec  # what the workers build (compared on reload: same spec, same pool)
        self.size = limits.workers
        self.max_queue = limits.max_queue
        self.queue_timeout = limits.max_queue_ms / 1000
        self.budget = budget = limits.max_cpu_ms / 1000
        self.hard_timeout = hard_timeout if hard_timeout is not None else max(4 * budget, budget + 2.0)
        self.clock = clock or LoopClock()
        self.command = tuple(command)
        self.closed = False
        self.restarts: dict[str, int] = {}  # workers replaced, by cause (cpu, timeout, lost, start_failed)
        self._restart_counter = restarts
        self._init = wire.frame(spec)
        self._queue: deque[Job] = deque()
        self._slots: list[Worker | None] = [None] * self.size
        self._all: set[Worker] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._more = asyncio.Event()
        self._idle = 0
        self._up_since: float | None = None  # since when some worker is up (None: none is)

    # the request side ----------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the workers (idempotent; needs a running loop)."""
        if self._tasks or self.closed:
            return
        self._tasks = [self._task(slot) for slot in range(self.size)]

    def _task(self, slot: int) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(self._serve(slot), name=f"pipeline-worker-{self.route}-{slot}")
        task.add_done_callback(lambda done: self._ended(slot, done))
        return task

    def _ended(self, slot: int, task: asyncio.Task[None]) -> None:
        """A slot's task ends when the pool closes; ended otherwise (a bug), it is logged and started again, so
        that queued requests are never left without anyone to serve them."""
        if self.closed or task.cancelled() or task.exception() is None:
            return
        log.error("pipeline worker task of route %s failed; restarting it", self.route, exc_info=task.exception())
        asyncio.get_running_loop().call_later(1.0, self._restart, slot)

    def _restart(self, slot: int) -> None:
        if not self.closed:
            self._tasks[slot] = self._task(slot)

    async def run(self, body: bytes, headers: Headers, received: float) -> Result:
        if self.closed:
            raise Draining("draining", "this route's pipeline is stopping")
        self.start()
        if len(self._queue) >= self.max_queue + self._idle:
            raise PipelineOverloaded(detail=f"{len(self._queue)} requests are waiting for this route's "
                                            f"{self.size} pipeline worker(s) (pipeline_limits.max_queue)")
        loop = asyncio.get_running_loop()
        job = Job(wire.job(body, headers, received), loop.create_future(), self.clock.now())
        job.timer = loop.call_later(self.queue_timeout, self.sweep)
        self._queue.append(job)
        self._more.set()
        return await job.future

    def sweep(self) -> None:
        """Answer the requests that waited too long for a worker; kill the workers that stopped answering."""
        now = self.clock.now()
        queue = self._queue
        up = self._up_since if any(w is not None and w.alive for w in self._slots) else None
        while up is not None and queue and now - max(queue[0].queued_at, up) >= self.queue_timeout - SLACK:
            job = queue.popleft()
            if not job.future.done():
                job.future.set_exception(PipelineOverloaded(
                    detail=f"no pipeline worker was free within {self.queue_timeout * 1000:.0f} ms "
                           "(pipeline_limits.max_queue_ms)"))
        for worker in self._slots:
            if worker is not None and worker.job is not None and \
                    now - worker.started_at >= self.hard_timeout - SLACK:
                cpu = cpu_seconds(worker.process.pid)
                computing = cpu is not None and cpu - worker.cpu >= self.budget
                log.warning("pipeline worker of route %s did not answer within %.1fs (%s): killed and replaced",
                            self.route, self.hard_timeout, "computing" if computing else "stuck")
                worker.kill("cpu" if computing else "timeout")

    # the worker side -----------------------------------------------------------------------------------------
    async def _take(self) -> Job | None:
        while True:
            while self._queue:
                job = self._queue.popleft()
                if job.timer is not None:
                    job.timer.cancel()
                if not job.future.done():  # a caller that went away leaves a cancelled future behind
                    return job
            if self.closed:
                return None
            self._idle += 1
            self._more.clear()
            try:
                await self._more.wait()
            finally:
                self._idle -= 1

    async def _spawn(self) -> Worker:
        process = await asyncio.create_subprocess_exec(
            *self.command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=READ_LIMIT)
        worker = Worker(process)
        self._all.add(worker)
        try:
            async with asyncio.timeout(START_TIMEOUT):
                answer = await worker.exchange(self._init)
        except BaseException:
            worker.kill("start_failed")
            raise
        if not isinstance(answer, dict) or answer.get("ready") is not True:
            worker.kill("start_failed")
            why = answer.get("error") if isinstance(answer, dict) else answer
            raise wire.FrameError(f"the worker did not start: {why}")
        worker.cpu = float(answer.get("cpu", 0.0))
        return worker

    async def _serve(self, slot: int) -> None:
        failures = 0
        try:
            while True:
                worker = self._slots[slot]
                if worker is None or not worker.alive:
                    if self.closed and not self._queue:
                        return
                    worker = self._slots[slot] = await self._replace(worker, failures)
                    if worker is None:
                        failures += 1
                        await asyncio.sleep(min(10.0, 0.1 * 2 ** failures))  # do not spin on a broken setup
                        continue
                    failures = 0
                job = await self._take()
                if job is None:
                    return
                if not worker.alive:  # it died while idle: this request is not to blame, give it a new one
                    worker = self._slots[slot] = await self._replace(worker, failures)
                    if worker is None:
                        if not job.future.done():
                            job.future.set_exception(PipelineUnavailable(detail="no pipeline worker could start"))
                        continue
                if not await self._exchange(worker, job):
                    self._slots[slot] = None
        finally:
            worker = self._slots[slot]
            self._slots[slot] = None
            if worker is not None:
                worker.close()

    async def _replace(self, old: Worker | None, failures: int) -> Worker | None:
        if old is not None:
            self._restarted(old.killed or "lost")
            await old.reap(STOP_GRACE)
            self._all.discard(old)
        try:
            worker = await self._spawn()
        except (*_BROKEN, TimeoutError) as exc:
            self._restarted("start_failed")
            log.error("pipeline worker of route %s failed to start (%d in a row): %s", self.route, failures + 1, exc)
            if not any(w is not None and w.alive for w in self._slots):  # nobody will serve the queue soon
                self._fail_queue(PipelineUnavailable(detail=f"no pipeline worker could start ({exc})"))
            return None
        if not any(w is not None and w.alive for w in self._slots):  # the queue's waits count from now
            self._up_since = self.clock.now()
            if self._queue:
                asyncio.get_running_loop().call_later(self.queue_timeout, self.sweep)
        return worker

    def _fail_queue(self, error: Exception) -> None:
        while self._queue:
            job = self._queue.popleft()
            if job.timer is not None:
                job.timer.cancel()
            if not job.future.done():
                job.future.set_exception(error)

    async def _exchange(self, worker: Worker, job: Job) -> bool:
        """One request on one worker; False when the worker is gone (killed, died, or spoke nonsense)."""
        worker.job = job
        worker.started_at = self.clock.now()
        timer = asyncio.get_running_loop().call_later(self.hard_timeout, self.sweep)
        try:
            result, worker.cpu = wire.read_result(await worker.exchange(job.frame))
        except _BROKEN as exc:
            cause = worker.killed or "lost"
            worker.kill(cause)
            self._restarted(cause)
            if not job.future.done():
                job.future.set_exception(self._lost(cause, exc))
            await worker.reap(STOP_GRACE)
            self._all.discard(worker)
            return False
        finally:
            timer.cancel()
            worker.job = None
        if not job.future.done():
            job.future.set_result(result)
        return True

    def _lost(self, cause: str, exc: BaseException) -> PipelineUnavailable | BudgetExceeded:
        if cause == "cpu":
            return BudgetExceeded(detail=f"preprocessing this request needed more than {self.budget * 1000:.0f} ms "
                                         "of CPU time (pipeline_limits.max_cpu_ms); its worker was replaced")
        if cause == "timeout":
            return PipelineUnavailable("pipeline_timeout", f"the pipeline worker did not answer within "
                                       f"{self.hard_timeout:.1f} s; it was replaced")
        return PipelineUnavailable(detail=f"the pipeline worker running this request stopped "
                                          f"({type(exc).__name__}); it was replaced")

    def _restarted(self, cause: str) -> None:
        self.restarts[cause] = self.restarts.get(cause, 0) + 1
        if self._restart_counter is not None:
            self._restart_counter.inc((self.route, cause))

    # lifecycle -----------------------------------------------------------------------------------------------
    async def close(self, timeout: float = 10.0) -> None:
        """Finish the queued requests (within `timeout`), then stop every worker."""
        self.closed = True
        self._more.set()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        self._fail_queue(Draining("draining", "this route's pipeline stopped"))
        workers = list(self._all)
        for worker in workers:
            worker.close()
        await asyncio.gather(*(w.reap(STOP_GRACE) for w in workers), return_exceptions=True)
        self._all.clear()

    def summary(self) -> dict[str, Any]:
        return {"workers": self.size, "alive": sum(1 for w in self._slots if w is not None and w.alive),
                "busy": sum(1 for w in self._slots if w is not None and w.job is not None),
                "queued": len(self._queue), "restarts": dict(self.restarts), "closed": self.closed}

    def pids(self) -> list[int]:
        return [w.process.pid for w in self._slots if w is not None and w.alive]

    def __repr__(self) -> str:
        s = self.summary()
        return (f"<WorkerPool {self.route} workers={s['alive']}/{s['workers']} busy={s['busy']} "
                f"queued={s['queued']}>")


__all__ = ["COMMAND", "Job", "Worker", "WorkerPool"]
