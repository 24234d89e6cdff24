"""The asyncio shells around the health cores: one task probing endpoints, one returning ejected ones.

Both sleep until their core's next deadline, or until woken (new endpoints, a fresh ejection).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from meshbatch.upstream.endpoint import Endpoint
from meshbatch.upstream.health.active import ActiveChecks
from meshbatch.upstream.health.grpc_probe import grpc_probe
from meshbatch.upstream.health.outlier import Ejection, OutlierDetector
from meshbatch.upstream.health.probe import probe, probe_request

log = logging.getLogger("meshbatch.health")
IDLE = 3600.0


async def sleep_until(deadline: float | None, wake: asyncio.Event) -> None:
    """Until `deadline` (the loop's clock, clock.py) or `wake` is set; clears `wake`."""
    delay = IDLE if deadline is None else deadline - asyncio.get_running_loop().time()
    if delay > 0:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await wake.wait()
    wake.clear()


class HealthRunner:
    """Runs a cluster's active checks and outlier returns; `wake()` after the membership changed."""

    def __init__(self, cluster: str, checks: ActiveChecks | None, outlier: OutlierDetector | None,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.cluster = cluster
        self.checks = checks
        self.outlier = outlier
        self.loop = loop
        self._wake_checks = asyncio.Event()
        self._wake_outlier = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        if outlier is not None:
            outlier.on_eject = self._ejected

    def start(self) -> None:
        if self.checks is not None:
            self._spawn(self._run_checks())
        if self.outlier is not None:
            self._spawn(self._run_outlier())

    def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        self._tasks.clear()

    def wake(self) -> None:
        self._wake_checks.set()
        self._wake_outlier.set()

    def _spawn(self, coro: object) -> None:
        task: asyncio.Task[None] = self.loop.create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _ejected(self, ejection: Ejection) -> None:
        log.warning("cluster %s: endpoint %s ejected for %.1fs (%s)", self.cluster, ejection.endpoint,
                    ejection.until - ejection.at, ejection.reason)
        self._wake_outlier.set()

    async def _run_outlier(self) -> None:
        outlier = self.outlier
        assert outlier is not None
        while True:
            outlier.tick(self.loop.time())
            await sleep_until(outlier.next_deadline(), self._wake_outlier)

    async def _run_checks(self) -> None:
        checks = self.checks
        assert checks is not None
        request = probe_request(checks.config, self.cluster)
        while True:
            for endpoint in checks.due(self.loop.time()):
                self._spawn(self._probe(checks, endpoint, request))
            await sleep_until(checks.next_deadline(), self._wake_checks)

    async def _probe(self, checks: ActiveChecks, endpoint: Endpoint, request: bytes) -> None:
        try:
            config = checks.config
            if config.type == "grpc":
                ok, detail = await grpc_probe(endpoint, config, config.host or self.cluster, self.loop)
            else:
                ok, detail = await probe(endpoint, config, request, self.loop)
        except Exception as exc:  # a probe must never end the checking task
            ok, detail = False, f"error: {exc}"
        changed = checks.result(endpoint, ok, self.loop.time(), detail)
        if ok and self.outlier is not None and self.outlier.config.successful_active_health_check_uneject_host:
            self.outlier.uneject(endpoint)
        if changed is not None:
            log.warning("cluster %s: endpoint %s is %s (active health check: %s)", self.cluster,
                        endpoint.address, "healthy" if changed else "unhealthy", detail)
        self._wake_checks.set()


__all__ = ["HealthRunner", "sleep_until"]
