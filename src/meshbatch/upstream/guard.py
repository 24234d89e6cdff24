"""The circuit breakers of one cluster: thresholds over its traffic, its retry budget, a breaker per endpoint.

Thresholds (Envoy's): requests in flight (`max_requests`), callers waiting for a connection across the
cluster (`max_pending`), connections open across the cluster (`max_connections`), retries outstanding
(`max_retries`). A request over `max_requests`, `max_pending` or `max_retries` is answered 503 at once (flag
UO). `max_connections` is enforced by the cluster's pools (a shared `ConnectionBudget`): a request that
would need one connection too many waits for one, as a pending request, so `max_pending` bounds it.

An endpoint whose breaker opens is taken out of balancing with its own bit of `Endpoint.down`, so every
route and balancer skips it; when its open time is over, the next request through this guard probes it.
A guard outlives reloads that keep its config; `release()` gives back the endpoints it took out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from meshbatch.config.plain import CircuitBreakers
from meshbatch.errors import CircuitOpen
from meshbatch.telemetry.metrics import Counter
from meshbatch.upstream.breaker import CLOSED, HALF_OPEN, OPEN, EndpointBreaker
from meshbatch.upstream.budget import RetryBudget
from meshbatch.upstream.endpoint import DOWN_NAMES, Endpoint

BREAKER_OPEN = 4  # the bit of `Endpoint.down` this module owns
DOWN_NAMES.setdefault(BREAKER_OPEN, "circuit_breaker_open")
GATEWAY = frozenset({502, 503, 504})
UNLIMITED = 1 << 30
INF = float("inf")


class GuardCounters(Protocol):
    """Where a guard counts its refusals (by threshold) and its breakers' transitions (by state entered)."""

    overflow: Counter
    breaker: Counter


class ClusterGuard:
    __slots__ = ("_next_due", "_opened", "active", "breakers", "budget", "config", "metrics", "name", "retries")

    def __init__(self, name: str, config: CircuitBreakers, metrics: GuardCounters | None = None) -> None:
        self.name = name
        self.config = config
        self.metrics = metrics
        self.active = 0  # requests in flight through this guard
        self.retries = 0  # retries in flight (sent, not yet answered)
        self.budget = RetryBudget(config.retry_budget) if config.retry_budget is not None else None
        self.breakers: dict[str, EndpointBreaker] = {}  # only endpoints that failed lately or are open
        self._opened: dict[str, Endpoint] = {}  # endpoints this guard took out of balancing
        self._next_due = INF

    # thresholds ------------------------------------------------------------------------------------
    def admit(self, endpoint: Endpoint, members: Sequence[Endpoint]) -> None:
        """Raise CircuitOpen when sending one more request to `endpoint` would cross a threshold."""
        config = self.config
        if self.active >= config.max_requests:
            self._overflow("max_requests", f"{self.active} requests in flight")
        pool = endpoint.pool
        if pool.idle:
            return
        waits = pool.opened >= pool.limits.max_connections  # for one of the endpoint's own connections
        if not waits and sum(e.pool.opened for e in members) >= config.max_connections:
            # the cluster's cap: it waits unless another endpoint's idle connection can make room
            waits = not any(e.pool.idle for e in members if e is not endpoint)
            if waits and self.metrics is not None:
                self.metrics.overflow.inc((self.name, "max_connections"))
        if waits:
            pending = sum(e.pool.pending for e in members)
            if pending >= config.max_pending:
                self._overflow("max_pending", f"{pending} requests wait for a connection")

    def _overflow(self, threshold: str, detail: str) -> None:
        if self.metrics is not None:
            self.metrics.overflow.inc((self.name, threshold))
        raise CircuitOpen(f"{threshold}_overflow", f"cluster {self.name!r}: {detail}")

    # retries ---------------------------------------------------------------------------------------
    def retry_allowance(self, now: float, in_flight: int) -> tuple[int, str]:
        """Units of retry allowed now, and when none the reason (`max_retries` or `budget`)."""
        limit = self.config.max_retries
        if limit is not None and self.retries >= limit:
            return 0, "max_retries"
        if self.budget is None:
            return UNLIMITED, ""
        units = self.budget.available(now, in_flight)
        return units, "" if units else "budget"

    def take_retry(self, now: float, units: int) -> None:
        """A retry decided (it may wait out its backoff first): its units count against the budget's window."""
        if self.budget is not None:
            self.budget.withdraw(now, units)

    def begin_retry(self) -> None:
        """A retry is sent: it counts as in flight (max_retries, the budget's in-flight limit) until answered."""
        self.retries += 1
        if self.budget is not None:
            self.budget.begin()

    def end_retry(self) -> None:
        self.retries -= 1
        if self.budget is not None:
            self.budget.end()

    def deposit(self, now: float, units: int) -> None:
        if self.budget is not None:
            self.budget.deposit(now, units)

    # endpoint breakers -----------------------------------------------------------------------------
    def probe(self, now: float, members: Iterable[Endpoint], tried: Sequence[Endpoint] = ()) -> Endpoint | None:
        """An endpoint whose open time is over, now half-open: the caller sends it this request."""
        if now < self._next_due:
            return None
        chosen: Endpoint | None = None
        for endpoint in members:
            breaker = self.breakers.get(endpoint.address)
            # only endpoints out for this reason alone: an ejected or unhealthy one stays out
            if breaker is not None and breaker.due(now) and endpoint.down == BREAKER_OPEN and endpoint not in tried:
                breaker.probe()
                self._transition(endpoint, HALF_OPEN)
                chosen = endpoint
                break
        self._next_due = min((b.open_until for b in self.breakers.values() if b.state == OPEN), default=INF)
        return chosen

    def record(self, endpoint: Endpoint, status: int, now: float) -> None:
        """The outcome of one request to `endpoint`: its status, or the 5xx its error counts as (0: neither)."""
        rule = self.config.endpoint
        if rule is None:
            return
        address = endpoint.address
        breaker = self.breakers.get(address)
        if status == 0:  # a failure that is not the endpoint's (our deadline, our pool): no verdict
            if breaker is not None and breaker.state == HALF_OPEN:
                breaker.abandon(now)
                self._transition(endpoint, OPEN)
                self._next_due = min(self._next_due, now)
            return
        failed = status >= 500 if rule.failure_on == "5xx" else status in GATEWAY
        if breaker is None:
            if not failed:
                return
            breaker = self.breakers[address] = EndpointBreaker(f"{self.name}/{address}", rule.consecutive_failures,
                                                                rule.open_ms / 1000, rule.max_open_ms / 1000)
        entered = breaker.record(failed, now)
        if entered == OPEN:
            self._opened[address] = endpoint
            endpoint.set_down(BREAKER_OPEN, True)
            self._next_due = min(self._next_due, breaker.open_until)
            self._transition(endpoint, OPEN)
        elif entered == CLOSED:
            self._opened.pop(address, None)
            endpoint.set_down(BREAKER_OPEN, False)
            self._transition(endpoint, CLOSED)
        if breaker.state == CLOSED and breaker.failures == 0:
            del self.breakers[address]

    def _transition(self, endpoint: Endpoint, state: str) -> None:
        if self.metrics is not None:
            self.metrics.breaker.inc((self.name, endpoint.address, state))

    def release(self) -> None:
        """This guard is replaced or gone: put back the endpoints it took out."""
        for endpoint in self._opened.values():
            endpoint.set_down(BREAKER_OPEN, False)
        self._opened.clear()
        self.breakers.clear()
        self._next_due = INF

    # state -----------------------------------------------------------------------------------------
    def open_endpoints(self) -> list[str]:
        return sorted(a for a, b in self.breakers.items() if b.state != CLOSED)

    def summary(self) -> dict[str, object]:
        return {
            "cluster": self.name, "requests_in_flight": self.active, "retries_in_flight": self.retries,
            "open_endpoints": {a: b.state for a, b in sorted(self.breakers.items()) if b.state != CLOSED},
        }

    def __repr__(self) -> str:
        return f"<ClusterGuard {self.name} active={self.active} retries={self.retries} open={len(self._opened)}>"


__all__ = ["BREAKER_OPEN", "ClusterGuard", "GuardCounters"]
