"""Outlier detection with explicit times: consecutive failures eject inline, ejections grow and expire,
the share ejected is capped, and the statistical checks run each interval."""

from __future__ import annotations

from upstream_support import endpoints

from meshbatch.config.model import OutlierDetection
from meshbatch.upstream.endpoint import EJECTED
from meshbatch.upstream.endpoint_set import EndpointSet
from meshbatch.upstream.health.outlier import OutlierDetector


def detector(n: int = 3, **config: object) -> tuple[EndpointSet, OutlierDetector]:
    hosts = endpoints(n)
    return hosts, OutlierDetector(OutlierDetection.model_validate(config), hosts, now=0.0)


def fail(hosts: EndpointSet, i: int, status: int, times: int, at: float = 1.0) -> None:
    for _ in range(times):
        hosts.all[i].observe(status, 0.001, at)


def test_the_fifth_consecutive_5xx_ejects() -> None:
    hosts, _ = detector(max_ejection_percent=50)
    fail(hosts, 0, 500, 4)
    assert not hosts.all[0].down
    fail(hosts, 0, 500, 1)
    assert hosts.all[0].down & EJECTED
    assert hosts.available == hosts.all[1:]
    assert hosts.all[0].ejections == 1


def test_a_success_resets_the_count() -> None:
    hosts, _ = detector()
    fail(hosts, 0, 500, 4)
    fail(hosts, 0, 200, 1)
    fail(hosts, 0, 500, 4)
    assert not hosts.all[0].down


def test_gateway_failures_and_their_own_limit() -> None:
    hosts, d = detector(consecutive_5xx=None, consecutive_gateway_failure=3)
    fail(hosts, 0, 500, 10)  # 500 is not a gateway failure
    assert not hosts.all[0].down
    fail(hosts, 0, 503, 2)
    fail(hosts, 0, 504, 1)
    assert hosts.all[0].down & EJECTED
    assert d.ejections_by_reason == {"consecutive_gateway_failure": 1}


def test_429_and_4xx_are_not_failures() -> None:
    hosts, _ = detector()
    fail(hosts, 0, 429, 20)
    fail(hosts, 0, 404, 20)
    assert not hosts.all[0].down


def test_ejection_time_grows_with_each_ejection_and_expires() -> None:
    hosts, d = detector(base_ejection_time_ms=30_000, interval_ms=10_000, max_ejection_percent=100)
    e = hosts.all[0]
    fail(hosts, 0, 500, 5, at=1.0)
    assert e.ejected_until == 31.0
    assert d.next_deadline() == 10.0  # the first sweep comes first
    d.tick(10.0)
    d.tick(20.0)
    assert e.down & EJECTED
    d.tick(31.0)
    assert not e.down
    fail(hosts, 0, 500, 5, at=32.0)
    assert e.ejected_until == 32.0 + 60.0  # second ejection: twice the base


def test_ejection_time_is_capped() -> None:
    hosts, _ = detector(base_ejection_time_ms=30_000, max_ejection_time_ms=45_000, max_ejection_percent=100)
    e = hosts.all[0]
    e.ejection_level = 5
    fail(hosts, 0, 500, 5, at=1.0)
    assert e.ejected_until == 46.0


def test_the_level_decreases_while_the_endpoint_behaves() -> None:
    hosts, d = detector(interval_ms=10_000, base_ejection_time_ms=1_000, max_ejection_percent=100)
    e = hosts.all[0]
    fail(hosts, 0, 500, 5, at=1.0)
    fail(hosts, 0, 500, 5, at=3.0)  # ejected once more after the first ended? not yet swept: still ejected
    d.tick(2.5)
    fail(hosts, 0, 500, 5, at=3.0)
    assert e.ejection_level == 2
    d.tick(10.0)
    d.tick(20.0)
    d.tick(30.0)
    assert e.ejection_level == 0


def test_max_ejection_percent_caps_the_share_but_one_may_always_go() -> None:
    hosts, d = detector(n=3, max_ejection_percent=10)
    fail(hosts, 0, 500, 5)
    fail(hosts, 1, 500, 5)
    assert hosts.all[0].down and not hosts.all[1].down
    assert d.refused == 1
    hosts10, _ = detector(n=10, max_ejection_percent=20)
    for i in range(5):
        fail(hosts10, i, 500, 5)
    assert len(hosts10.available) == 8


def test_success_rate_ejects_the_outlier_of_a_large_enough_group() -> None:
    hosts, d = detector(n=6, interval_ms=10_000, consecutive_5xx=None, consecutive_gateway_failure=None,
                        success_rate_request_volume=100, max_ejection_percent=50)
    for i, e in enumerate(hosts.all):
        for n in range(200):
            failed = (i == 5 and n % 4 == 0) or n % 100 == 0  # endpoint 5: 25% failures, the rest 1%
            e.observe(500 if failed else 200, 0.001, 0.501)
    d.tick(10.0)
    assert [e.address for e in hosts.all if e.down] == [hosts.all[5].address]
    assert d.ejections_by_reason == {"success_rate": 1}
    assert all(e.window_total == 0 for e in hosts.all)


def test_success_rate_needs_enough_hosts_and_volume() -> None:
    hosts, d = detector(n=3, consecutive_5xx=None, consecutive_gateway_failure=None)
    for _ in range(500):
        hosts.all[0].observe(500, 0.001, 0.501)
        hosts.all[1].observe(200, 0.001, 0.501)
    d.tick(10.0)
    assert not hosts.all[0].down  # 3 hosts < success_rate_minimum_hosts (5)


def test_failure_percentage() -> None:
    hosts, _ = detector(n=5, consecutive_5xx=None, consecutive_gateway_failure=None,
                        success_rate_stdev_factor=None, failure_percentage_threshold=50,
                        max_ejection_percent=100)
    d = OutlierDetector(OutlierDetection(consecutive_5xx=None, consecutive_gateway_failure=None,
                                         success_rate_stdev_factor=None, failure_percentage_threshold=50,
                                         max_ejection_percent=100), hosts, now=0.0)
    for i, e in enumerate(hosts.all):
        for n in range(60):
            e.observe(500 if i < 2 and n % 3 else 200, 0.001, 0.501)
    d.tick(10.0)
    assert [e.down != 0 for e in hosts.all] == [True, True, False, False, False]


def test_uneject_by_a_passing_active_check() -> None:
    hosts, d = detector()
    fail(hosts, 0, 500, 5)
    d.uneject(hosts.all[0])
    assert not hosts.all[0].down and hosts.all[0].consecutive_5xx == 0


def test_detach_returns_an_ejected_endpoint() -> None:
    hosts, _ = detector()
    fail(hosts, 0, 500, 5)
    OutlierDetector.detach(hosts.all[0])
    assert not hosts.all[0].down and hosts.all[0].trip is None
