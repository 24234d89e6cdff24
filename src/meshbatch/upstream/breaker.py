"""The circuit breaker of one endpoint, as a transition table (sans-I/O: every call takes `now`).

closed --trip--> open --probe--> half_open --success--> closed
                   ^                 |
                   +----failure------+   (and `abandon`: the probe ended without a verdict)

Closed, it counts consecutive failures; at the threshold it trips. Open, the endpoint gets no traffic until
`open_until`; then one request is let through as a probe (half-open). The probe's success closes the breaker;
its failure opens it again for twice as long (up to the cap). Any other move raises `IllegalTransition`
(core/transitions.py).
"""

from __future__ import annotations

from meshbatch.core.transitions import IllegalTransition, Transitions

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

TRANSITIONS: dict[tuple[str, str], str] = {
    (CLOSED, "trip"): OPEN,
    (OPEN, "probe"): HALF_OPEN,
    (HALF_OPEN, "success"): CLOSED,
    (HALF_OPEN, "failure"): OPEN,
    (HALF_OPEN, "abandon"): OPEN,
}


BREAKER = Transitions("breaker", TRANSITIONS)


class EndpointBreaker:
    __slots__ = ("base", "cap", "failures", "level", "name", "open_until", "state", "threshold")

    def __init__(self, name: str, threshold: int, base: float, cap: float) -> None:
        self.name = name
        self.threshold = threshold
        self.base = base
        self.cap = cap
        self.state = CLOSED
        self.failures = 0  # consecutive, while closed
        self.level = 0  # failed probes in a row: the open time doubles with each
        self.open_until = 0.0

    def _go(self, event: str) -> str:
        state = self.state = BREAKER.step(self.name, self.state, event)
        return state

    def record(self, failed: bool, now: float) -> str | None:
        """The outcome of a request to the endpoint; the state entered, if it changed."""
        state = self.state
        if state == CLOSED:
            if not failed:
                self.failures = 0
                return None
            self.failures += 1
            if self.failures < self.threshold:
                return None
            self.level = 0
            self.open_until = now + self.base
            return self._go("trip")
        if state == HALF_OPEN:
            if failed:
                self.level += 1
                self.open_until = now + self.open_time()
                return self._go("failure")
            self.failures = 0
            self.level = 0
            return self._go("success")
        return None  # open: answers to requests sent before it opened say nothing new

    def open_time(self) -> float:
        return min(self.cap, self.base * (1 << min(self.level, 30)))

    def due(self, now: float) -> bool:
        """Open, and the open time is over: the next request may probe."""
        return self.state == OPEN and now >= self.open_until

    def probe(self) -> str:
        return self._go("probe")

    def abandon(self, now: float) -> str:
        """The probe ended without a verdict (cancelled, or a failure that is not the endpoint's): probe again."""
        self.open_until = now
        return self._go("abandon")

    def __repr__(self) -> str:
        return f"<EndpointBreaker {self.name} {self.state} failures={self.failures}>"


__all__ = ["BREAKER", "CLOSED", "HALF_OPEN", "OPEN", "TRANSITIONS", "EndpointBreaker", "IllegalTransition"]
