"""The retry policy's conditions and the retry layer of plain routes (scripted inner handlers)."""

from __future__ import annotations

import asyncio

import pytest
from layers_support import Script, cluster, draws, request, target

from meshbatch.config.model import Retry
from meshbatch.errors import (
    BadGateway,
    CircuitOpen,
    ConnectFailed,
    ConnectTimeout,
    DeadlineExceeded,
    GatewayTimeout,
    PoolOverflow,
    Unavailable,
    UpstreamReset,
)
from meshbatch.layers.metrics import LayerMetrics
from meshbatch.layers.retry import ATTEMPTS_HEADER, RetryLayer, RetryPolicy
from meshbatch.telemetry.metrics import Registry

FAST = {"backoff": {"base_ms": 1}}


def policy(**config: object) -> RetryPolicy:
    return RetryPolicy("r", Retry.model_validate({**FAST, **config}), LayerMetrics.of(Registry()), draws(0.0))


@pytest.mark.parametrize(("retry_on", "status", "expected"), [
    (["5xx"], 500, True), (["5xx"], 503, True), (["5xx"], 429, False),
    (["gateway-error"], 500, False), (["gateway-error"], 504, True),
    (["reset"], 503, False), (["connect-failure"], 503, False),
    (["retriable-4xx"], 409, True), (["retriable-4xx"], 404, False),
])
def test_status_conditions(retry_on: list[str], status: int, expected: bool) -> None:
    assert policy(retry_on=retry_on).retriable_status(status) is expected


def test_retriable_status_codes() -> None:
    rules = policy(retry_on=["retriable-status-codes"], retriable_status_codes=[418, 429])
    assert rules.retriable_status(429) and rules.retriable_status(418) and not rules.retriable_status(503)


@pytest.mark.parametrize(("retry_on", "error", "expected"), [
    (["connect-failure"], ConnectFailed("upstream_connect_failed"), True),
    (["connect-failure"], ConnectTimeout("connect_timeout"), True),
    (["connect-failure"], UpstreamReset("upstream_reset"), False),
    (["reset"], UpstreamReset("upstream_reset"), True),
    (["reset"], GatewayTimeout("upstream_timeout"), False),
    (["gateway-error"], GatewayTimeout("upstream_timeout"), True),
    (["5xx"], BadGateway("bad_upstream_response"), True),
    (["5xx"], ConnectFailed("upstream_connect_failed"), True),
    (["5xx"], DeadlineExceeded("deadline_exceeded"), False),
    (["5xx"], PoolOverflow("upstream_pool_overflow"), False),
    (["5xx"], CircuitOpen("max_requests_overflow"), False),
    (["5xx"], Unavailable("no_healthy_upstream"), False),
    (["5xx"], GatewayTimeout("upstream_pool_timeout"), False),
])
def test_error_conditions(retry_on: list[str], error: Exception, expected: bool) -> None:
    assert policy(retry_on=retry_on).retriable_error(error) is expected  # type: ignore[arg-type]


def test_config_needs_codes_with_the_condition() -> None:
    with pytest.raises(ValueError, match="retriable_status_codes"):
        Retry(retry_on=["retriable-status-codes"])


def layer(script: Script, rules: RetryPolicy, timeout: float = 2.0, **breakers: object) -> RetryLayer:
    c = cluster()
    return RetryLayer(script, rules, target(c, **breakers), timeout, asyncio.get_running_loop())


async def test_retries_until_success_and_says_how_many_attempts() -> None:
    script = Script([503, 503, 200])
    retry = layer(script, policy(num_retries=3))
    response = await retry(request())
    assert response.status == 200 and len(script.calls) == 3
    assert (ATTEMPTS_HEADER, b"3") in response.headers
    metrics = retry.policy.metrics
    assert metrics is not None and metrics.attempts.get(("r", "retry")) == 2


async def test_gives_the_last_failure_after_the_retries() -> None:
    script = Script([503])
    response = await layer(script, policy(num_retries=2))(request())
    assert response.status == 503 and len(script.calls) == 3
    assert (ATTEMPTS_HEADER, b"3") in response.headers


async def test_an_error_after_retries_is_answered_with_its_reason() -> None:
    script = Script([ConnectFailed("upstream_connect_failed", "refused")])
    response = await layer(script, policy(retry_on=["connect-failure"], num_retries=1))(request())
    assert response.status == 503 and response.reason == "upstream_connect_failed"
    assert (ATTEMPTS_HEADER, b"2") in response.headers


async def test_not_retried_failures_pass_through_untouched() -> None:
    script = Script([CircuitOpen("max_requests_overflow")])
    with pytest.raises(CircuitOpen):
        await layer(script, policy())(request())
    script = Script([500])
    response = await layer(script, policy(retry_on=["gateway-error"]))(request())
    assert response.status == 500 and len(script.calls) == 1 and not response.headers


async def test_a_body_over_the_replay_limit_is_sent_once() -> None:
    script = Script([503, 200])
    rules = policy(max_replay_bytes=4)
    response = await layer(script, rules)(request(body=b"12345"))
    assert response.status == 503 and len(script.calls) == 1
    assert rules.metrics is not None and rules.metrics.retries_denied.get(("r", "replay_limit")) == 1


async def test_the_budget_and_max_retries_stop_retries() -> None:
    script = Script([503])
    no_budget = {"budget_percent": 0, "min_retry_concurrency": 0, "min_retries_per_second": 0}
    rules = policy()
    response = await layer(script, rules, retry_budget=no_budget)(request())
    assert response.status == 503 and len(script.calls) == 1
    assert rules.metrics is not None and rules.metrics.retries_denied.get(("r", "budget")) == 1
    script = Script([503])
    await layer(script, rules, max_retries=0)(request())
    assert len(script.calls) == 1 and rules.metrics.retries_denied.get(("r", "max_retries")) == 1


async def test_no_retry_past_the_deadline() -> None:
    script = Script([503])
    rules = RetryPolicy("r", Retry(backoff={"base_ms": 500}), None, draws(1.0))  # type: ignore[arg-type]
    response = await layer(script, rules, timeout=0.2)(request())
    assert response.status == 503 and len(script.calls) == 1


async def test_each_retry_reserves_and_returns_its_budget_place() -> None:
    script = Script([503, 503, 200], delay=0.001)
    retry = layer(script, policy(num_retries=2))
    guard = retry.default.guard
    seen: list[int] = []
    inner = retry.inner

    async def watch(req):  # type: ignore[no-untyped-def]
        seen.append(guard.retries)
        return await inner(req)
    retry.inner = watch
    await retry(request())
    assert seen == [0, 1, 1] and guard.retries == 0
    assert guard.budget is not None and guard.budget.active == 0


async def test_cancellation_returns_the_budget_place() -> None:
    script = Script([503, 200], delay=0.05)
    retry = layer(script, RetryPolicy("r", Retry(backoff={"base_ms": 1}), None, draws(0.0)))
    task = asyncio.get_running_loop().create_task(retry(request()))
    await asyncio.sleep(0.07)  # in the retry
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert retry.default.guard.retries == 0
