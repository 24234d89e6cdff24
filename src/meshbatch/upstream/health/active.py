"""Active health checking, sans I/O: which endpoints are due a probe, and what a probe's result changes.

An endpoint starts healthy and is probed at once. `unhealthy_threshold` failed probes in a row take it out of
balancing; `healthy_threshold` passed probes in a row bring it back. Probes repeat every `interval`
(`unhealthy_interval` while it is out), each at most `timeout`.
"""

from __future__ import annotations

from dataclasses import dataclass

from meshbatch.config.plain import HealthCheck
from meshbatch.upstream.endpoint import FAILED_ACTIVE_CHECK, Endpoint


@dataclass(slots=True)
class ProbeState:
    due: float
    passes: int = 0
    fails: int = 0
    probing: bool = False
    checks: int = 0
    failures: int = 0
    last: str = ""


class ActiveChecks:
    def __init__(self, config: HealthCheck) -> None:
        self.config = config
        self.interval = config.interval_ms / 1000
        self.unhealthy_interval = (config.unhealthy_interval_ms or config.interval_ms) / 1000
        self.states: dict[Endpoint, ProbeState] = {}

    def add(self, endpoint: Endpoint, now: float) -> None:
        if endpoint not in self.states:
            self.states[endpoint] = ProbeState(due=now)

    def remove(self, endpoint: Endpoint) -> None:
        if self.states.pop(endpoint, None) is not None and endpoint.down & FAILED_ACTIVE_CHECK:
            endpoint.set_down(FAILED_ACTIVE_CHECK, False)

    def due(self, now: float) -> list[Endpoint]:
        """Endpoints to probe now; each is marked as being probed until its `result`."""
        out = []
        for endpoint, state in self.states.items():
            if not state.probing and state.due <= now:
                state.probing = True
                out.append(endpoint)
        return out

    def next_deadline(self) -> float | None:
        dues = [s.due for s in self.states.values() if not s.probing]
        return min(dues) if dues else None

    def result(self, endpoint: Endpoint, ok: bool, now: float, detail: str = "") -> bool | None:
        """Account one probe. Returns True when the endpoint became healthy, False when it became unhealthy,
        None when its state did not change (or it was removed meanwhile)."""
        state = self.states.get(endpoint)
        if state is None:
            return None
        state.probing = False
        state.checks += 1
        state.last = detail or ("ok" if ok else "failed")
        config = self.config
        changed: bool | None = None
        down = bool(endpoint.down & FAILED_ACTIVE_CHECK)
        if ok:
            state.passes += 1
            state.fails = 0
            if down and state.passes >= config.healthy_threshold:
                endpoint.set_down(FAILED_ACTIVE_CHECK, False)
                changed = True
        else:
            state.failures += 1
            state.fails += 1
            state.passes = 0
            if not down and state.fails >= config.unhealthy_threshold:
                endpoint.set_down(FAILED_ACTIVE_CHECK, True)
                changed = False
        down = bool(endpoint.down & FAILED_ACTIVE_CHECK)
        state.due = now + (self.unhealthy_interval if down else self.interval)
        return changed

    def summary(self) -> dict[str, object]:
        return {e.address: {"checks": s.checks, "failures": s.failures, "last": s.last}
                for e, s in self.states.items()}


__all__ = ["ActiveChecks", "ProbeState"]
