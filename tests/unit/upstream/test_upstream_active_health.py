"""Active health checks, sans I/O: who is due, thresholds both ways, intervals."""

from __future__ import annotations

from upstream_support import endpoints

from meshbatch.config.model import HealthCheck
from meshbatch.upstream.endpoint import FAILED_ACTIVE_CHECK
from meshbatch.upstream.health.active import ActiveChecks


def make(**config: object) -> tuple[ActiveChecks, list]:  # type: ignore[type-arg]
    checks = ActiveChecks(HealthCheck.model_validate(config))
    hosts = endpoints(2)
    for e in hosts.all:
        checks.add(e, 0.0)
    return checks, list(hosts.all)


def test_new_endpoints_are_probed_at_once_and_once_at_a_time() -> None:
    checks, eps = make(interval_ms=1000)
    assert checks.due(0.0) == eps
    assert checks.due(0.5) == []  # still being probed
    assert checks.next_deadline() is None
    checks.result(eps[0], True, 0.1)
    assert checks.next_deadline() == 1.1
    assert checks.due(1.0) == []
    assert checks.due(1.1) == [eps[0]]


def test_unhealthy_after_the_threshold_and_back_after_the_other() -> None:
    checks, eps = make(interval_ms=1000, unhealthy_threshold=3, healthy_threshold=2, unhealthy_interval_ms=200)
    e = eps[0]
    now = 0.0
    for expected in (None, None, False):
        checks.due(now)
        assert checks.result(e, False, now) is expected
        now += 1.0
    assert e.down & FAILED_ACTIVE_CHECK
    assert checks.next_deadline() == 2.0 + 0.2  # unhealthy_interval; endpoint 1 is still being probed
    checks.due(now)
    assert checks.result(e, True, now) is None
    checks.due(now)
    assert checks.result(e, True, now) is True
    assert not e.down


def test_expected_statuses() -> None:
    config = HealthCheck(expected_statuses=[204, "200-202"])
    assert config.expects(204) and config.expects(201) and not config.expects(203)
    assert HealthCheck().expects(200) and not HealthCheck().expects(500)


def test_removed_endpoints_are_forgotten_and_return_to_service() -> None:
    checks, eps = make(unhealthy_threshold=1)
    checks.due(0.0)
    checks.result(eps[0], False, 0.0)
    assert eps[0].down
    checks.remove(eps[0])
    assert not eps[0].down
    assert checks.result(eps[0], False, 1.0) is None
