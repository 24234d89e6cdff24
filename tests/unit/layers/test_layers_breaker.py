"""Endpoint circuit breakers (a transition table) and a cluster's guard: thresholds, open, probe, close."""

from __future__ import annotations

import pytest
from layers_support import cluster, guard, target

from meshbatch.clock import FakeClock
from meshbatch.errors import CircuitOpen
from meshbatch.upstream.breaker import CLOSED, HALF_OPEN, OPEN, EndpointBreaker, IllegalTransition
from meshbatch.upstream.endpoint import DOWN_NAMES
from meshbatch.upstream.guard import BREAKER_OPEN


def test_breaker_trips_after_consecutive_failures_only() -> None:
    clock = FakeClock(0.0)
    breaker = EndpointBreaker("c/a", threshold=3, base=5.0, cap=60.0)
    assert breaker.record(True, clock.now()) is None
    assert breaker.record(True, clock.now()) is None
    assert breaker.record(False, clock.now()) is None  # a success resets the count
    assert [breaker.record(True, clock.now()) for _ in range(3)] == [None, None, OPEN]
    assert breaker.state == OPEN and breaker.open_until == 5.0
    assert not breaker.due(4.9) and breaker.due(5.0)


def test_probe_success_closes_and_failure_doubles_the_open_time() -> None:
    breaker = EndpointBreaker("c/a", threshold=1, base=5.0, cap=12.0)
    breaker.record(True, 0.0)
    breaker.probe()
    assert breaker.state == HALF_OPEN
    assert breaker.record(True, 5.0) == OPEN and breaker.open_until == 15.0  # 10 s
    breaker.probe()
    assert breaker.record(True, 15.0) == OPEN and breaker.open_until == 27.0  # capped at 12 s
    breaker.probe()
    assert breaker.record(False, 27.0) == CLOSED
    assert breaker.failures == 0 and breaker.open_time() == 5.0


def test_answers_while_open_change_nothing_and_illegal_moves_raise() -> None:
    breaker = EndpointBreaker("c/a", threshold=1, base=1.0, cap=1.0)
    with pytest.raises(IllegalTransition, match="cannot probe when closed"):
        breaker.probe()
    breaker.record(True, 0.0)
    assert breaker.record(False, 0.1) is None and breaker.state == OPEN
    breaker.probe()
    with pytest.raises(IllegalTransition):
        breaker.probe()
    assert breaker.abandon(0.5) == OPEN and breaker.due(0.5)


async def test_guard_takes_an_endpoint_out_and_probes_it_back() -> None:
    c = cluster()
    t = target(c, endpoint={"consecutive_failures": 2, "open_ms": 1000})
    a, b, _ = c.hosts.all
    g = t.guard
    assert DOWN_NAMES[BREAKER_OPEN] == "circuit_breaker_open"
    g.record(a, 503, 0.0)
    g.record(a, 502, 0.0)
    assert a.down == BREAKER_OPEN and a not in c.hosts.available
    assert g.open_endpoints() == [a.address]
    assert t.pick(None, (), 0.5) is not a  # still open: the balancer skips it
    assert t.pick(None, (), 1.0) is a  # due: this request is the probe
    assert g.breakers[a.address].state == HALF_OPEN
    assert t.pick(None, (), 1.1) is not a  # one probe at a time
    g.record(a, 200, 1.2)
    assert a.down == 0 and a.address not in g.breakers
    g.record(b, 500, 2.0)
    g.record(b, 200, 2.0)
    assert b.address not in g.breakers  # a closed breaker with no failure is forgotten


async def test_probe_without_verdict_is_tried_again_and_other_bits_are_respected() -> None:
    c = cluster()
    t = target(c, endpoint={"consecutive_failures": 1, "open_ms": 1000})
    a = c.hosts.all[0]
    g = t.guard
    g.record(a, 504, 0.0)
    assert t.pick(None, (), 1.0) is a
    g.record(a, 0, 1.5)  # cancelled or the caller's deadline: no verdict
    assert g.breakers[a.address].state == OPEN and a.down == BREAKER_OPEN
    a.set_down(2, True)  # also ejected by outlier detection: not probed
    assert t.pick(None, (), 2.0) is not a
    a.set_down(2, False)
    assert t.pick(None, (), 2.0) is a
    g.release()
    assert a.down == 0


async def test_gateway_error_rule_ignores_other_5xx() -> None:
    c = cluster()
    g = guard(c, endpoint={"consecutive_failures": 1, "failure_on": "gateway-error"})
    a = c.hosts.all[0]
    g.record(a, 500, 0.0)
    assert a.down == 0
    g.record(a, 503, 0.0)
    assert a.down == BREAKER_OPEN


async def test_cluster_thresholds_refuse_at_once() -> None:
    c = cluster()
    g = guard(c, max_requests=2, max_connections=1, max_pending=0)
    a = c.hosts.all[0]
    g.active = 2
    with pytest.raises(CircuitOpen) as refused:
        g.admit(a, c.hosts.all)
    assert refused.value.reason == "max_requests_overflow" and refused.value.status == 503
    g.active = 0
    g.admit(a, c.hosts.all)  # nothing open yet: it may connect
    a.pool.opened = 1  # one connection open (busy) across the cluster: b would wait for the cluster's budget
    with pytest.raises(CircuitOpen, match="max_pending"):
        g.admit(c.hosts.all[1], c.hosts.all)  # ... and no one may wait
    g.config = g.config.model_copy(update={"max_pending": 1})
    g.admit(c.hosts.all[1], c.hosts.all)  # one may wait: admitted, to wait in the pool
    g.config = g.config.model_copy(update={"max_pending": 0})
    a.pool.limits = a.pool.limits.__class__(max_connections=1)
    with pytest.raises(CircuitOpen, match="max_pending"):
        g.admit(a, c.hosts.all)  # a would wait for its one connection, and no one may wait
    a.pool.opened = 0


async def test_retry_allowance_reasons() -> None:
    c = cluster()
    g = guard(c, max_retries=1)
    assert g.retry_allowance(0.0, 10)[0] > 0
    g.take_retry(0.0, 1)
    assert g.retry_allowance(0.0, 10)[0] > 0  # decided, waiting out its backoff: not in flight yet
    g.begin_retry()
    assert g.retry_allowance(0.0, 10) == (0, "max_retries")
    g.end_retry()
    no_budget = guard(c, retry_budget={"budget_percent": 0, "min_retry_concurrency": 0, "min_retries_per_second": 0})
    assert no_budget.retry_allowance(0.0, 10) == (0, "budget")
    unlimited = guard(c, retry_budget=None)
    assert unlimited.retry_allowance(0.0, 10)[0] > 1000
