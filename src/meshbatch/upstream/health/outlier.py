"""Passive outlier detection (Envoy's model), sans I/O: every method takes `now`.

Inline: an endpoint's `observe` counts consecutive 5xx and gateway failures and calls `trip` when one
reaches its limit: the endpoint is ejected at once. Each `interval`, `tick` also runs the statistical checks
over the interval's volume: success rate (eject below mean - stdev_factor/1000 x stdev, among at least
`success_rate_minimum_hosts` endpoints with `success_rate_request_volume` requests each) and failure
percentage (eject at or above `failure_percentage_threshold`).

An ejection lasts base_ejection_time x its level (capped by max_ejection_time); the level grows with each
ejection and shrinks by one for each interval the endpoint stays in service. At most max_ejection_percent of
the endpoints are ejected at once, but always at least one may be.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from statistics import fmean, pstdev

from meshbatch.config.plain import OutlierDetection
from meshbatch.upstream.endpoint import EJECTED, NEVER, Endpoint
from meshbatch.upstream.endpoint_set import EndpointSet


@dataclass(frozen=True, slots=True)
class Ejection:
    endpoint: str
    reason: str
    at: float
    until: float


class OutlierDetector:
    def __init__(self, config: OutlierDetection, endpoints: EndpointSet, now: float) -> None:
        self.config = config
        self.endpoints = endpoints
        self.next_sweep = now + config.interval_ms / 1000
        self.history: list[Ejection] = []  # the last ejections, newest last
        self.ejections_by_reason: dict[str, int] = {}
        self.refused = 0  # ejections the max_ejection_percent cap prevented
        self.on_eject: Callable[[Ejection], None] = lambda ejection: None  # the shell re-arms its timer
        for endpoint in endpoints.all:
            self.attach(endpoint)

    # membership ------------------------------------------------------------------------------------
    def attach(self, endpoint: Endpoint) -> None:
        config = self.config
        endpoint.limit_5xx = config.consecutive_5xx or NEVER
        endpoint.gateway_limit = config.consecutive_gateway_failure or NEVER
        endpoint.trip = self.trip

    @staticmethod
    def detach(endpoint: Endpoint) -> None:
        endpoint.limit_5xx = endpoint.gateway_limit = NEVER
        endpoint.trip = None
        if endpoint.down & EJECTED:
            endpoint.set_down(EJECTED, False)

    # ejection --------------------------------------------------------------------------------------
    def trip(self, endpoint: Endpoint, now: float) -> None:
        """Called inline by `Endpoint.observe` when a consecutive-failure limit is reached."""
        gateway = endpoint.consecutive_gateway >= endpoint.gateway_limit
        reason = "consecutive_gateway_failure" if gateway else "consecutive_5xx"
        endpoint.consecutive_5xx = endpoint.consecutive_gateway = 0
        self.eject(endpoint, now, reason)

    def eject(self, endpoint: Endpoint, now: float, reason: str) -> bool:
        if endpoint.down & EJECTED:
            return False
        if not self._may_eject():
            self.refused += 1
            return False
        config = self.config
        endpoint.ejection_level += 1
        base = config.base_ejection_time_ms / 1000
        longest = max(base, config.max_ejection_time_ms / 1000)
        endpoint.ejected_until = now + min(base * endpoint.ejection_level, longest)
        endpoint.ejections += 1
        endpoint.set_down(EJECTED, True)
        self.ejections_by_reason[reason] = self.ejections_by_reason.get(reason, 0) + 1
        ejection = Ejection(endpoint.address, reason, now, endpoint.ejected_until)
        self.history.append(ejection)
        del self.history[:-20]
        self.on_eject(ejection)
        return True

    def _may_eject(self) -> bool:
        members = self.endpoints.all
        ejected = sum(1 for e in members if e.down & EJECTED)
        return ejected == 0 or (ejected + 1) * 100 <= self.config.max_ejection_percent * len(members)

    def uneject(self, endpoint: Endpoint) -> None:
        if endpoint.down & EJECTED:
            endpoint.ejected_until = 0.0
            endpoint.consecutive_5xx = endpoint.consecutive_gateway = 0
            endpoint.set_down(EJECTED, False)

    # time ------------------------------------------------------------------------------------------
    def next_deadline(self) -> float:
        ends = [e.ejected_until for e in self.endpoints.all if e.down & EJECTED]
        return min([self.next_sweep, *ends])

    def tick(self, now: float) -> None:
        """Return ejected endpoints whose time is up; run the interval's checks when one is due."""
        returned = []
        for endpoint in self.endpoints.all:
            if endpoint.down & EJECTED and endpoint.ejected_until <= now:
                self.uneject(endpoint)
                returned.append(endpoint)
        if now < self.next_sweep:
            return
        interval = self.config.interval_ms / 1000
        self.next_sweep = max(self.next_sweep + interval, now + interval / 2)
        self._statistics(now)
        for endpoint in self.endpoints.all:
            if not endpoint.down & EJECTED and endpoint.ejection_level > 0 and endpoint not in returned:
                endpoint.ejection_level -= 1
            endpoint.window_total = endpoint.window_failed = 0

    def _statistics(self, now: float) -> None:
        config = self.config
        factor = config.success_rate_stdev_factor
        if factor is not None:
            volume = [e for e in self.endpoints.all if e.window_total >= config.success_rate_request_volume]
            if len(volume) >= config.success_rate_minimum_hosts:
                rates = [1 - e.window_failed / e.window_total for e in volume]
                floor = fmean(rates) - factor / 1000 * pstdev(rates)
                for endpoint, rate in zip(volume, rates, strict=True):
                    if rate < floor:
                        self.eject(endpoint, now, "success_rate")
        threshold = config.failure_percentage_threshold
        if threshold is not None:
            volume = [e for e in self.endpoints.all if e.window_total >= config.failure_percentage_request_volume]
            if len(volume) >= config.failure_percentage_minimum_hosts:
                for endpoint in volume:
                    if endpoint.window_failed * 100 >= threshold * endpoint.window_total:
                        self.eject(endpoint, now, "failure_percentage")

    def summary(self) -> dict[str, object]:
        return {
            "ejected": [e.address for e in self.endpoints.all if e.down & EJECTED],
            "ejections": dict(self.ejections_by_reason),
            "ejections_refused_by_cap": self.refused,
            "recent": [{"endpoint": j.endpoint, "reason": j.reason, "ejected_ms": round((j.until - j.at) * 1000)}
                       for j in self.history[-5:]],
        }


__all__ = ["Ejection", "OutlierDetector"]
