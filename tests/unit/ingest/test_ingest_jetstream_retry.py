"""The JetStream append's retry through a failover (ingest/logs/jetstream_retry.py), on a fake clock: which
errors are tried again, the attempts' timeouts and backoff, the caller's deadline as the bound; and the log's
server list (`url` with every node of a cluster)."""

from __future__ import annotations

import pytest
from nats.errors import ConnectionClosedError, NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import APIError, BadRequestError, NoStreamResponseError, ServiceUnavailableError

from meshbatch.clock import FakeClock
from meshbatch.config.model import IngestLog
from meshbatch.ingest.logs.base import LogError
from meshbatch.ingest.logs.jetstream import JetStreamLog, servers
from meshbatch.ingest.logs.jetstream_retry import ATTEMPT_TIMEOUT, BACKOFF_MAX, RetryState, transient, within_deadline


def api_error(code: int, err_code: int) -> APIError:
    error = APIError(code=code, err_code=err_code, description="x")
    return error


@pytest.mark.parametrize("exc", [NatsTimeout(), TimeoutError(), NoRespondersError(), NoStreamResponseError(),
                                 ServiceUnavailableError(code=503, err_code=10008, description="unavailable"),
                                 api_error(500, 10008), ConnectionResetError()])
def test_failover_errors_are_transient(exc: BaseException) -> None:
    assert transient(exc)


@pytest.mark.parametrize("exc", [ConnectionClosedError(), BadRequestError(code=400, err_code=10003,
                                                                          description="bad"),
                                 api_error(400, 10077), ValueError("x"), KeyError("k")])
def test_other_errors_are_final(exc: BaseException) -> None:
    assert not transient(exc)


class Sleeper:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.slept: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.clock.advance(seconds)


async def test_retried_until_the_failover_ends() -> None:
    clock = FakeClock()
    sleep = Sleeper(clock)
    timeouts: list[float] = []

    async def attempt(timeout: float) -> str:
        timeouts.append(timeout)
        if len(timeouts) < 4:
            clock.advance(timeout)  # no ack: the attempt waited its whole timeout
            raise NatsTimeout
        return "stored"

    assert await within_deadline(attempt, clock.now() + 30, clock, sleep) == "stored"
    assert timeouts == [ATTEMPT_TIMEOUT] * 4
    assert sleep.slept == [0.02, 0.04, 0.08]  # a short, growing backoff


async def test_the_deadline_bounds_the_retries() -> None:
    clock = FakeClock()
    sleep = Sleeper(clock)
    start = clock.now()
    timeouts: list[float] = []

    async def attempt(timeout: float) -> None:
        timeouts.append(timeout)
        clock.advance(timeout)
        raise NoStreamResponseError

    with pytest.raises(NoStreamResponseError):
        await within_deadline(attempt, start + 3.5, clock, sleep)
    assert clock.now() <= start + 3.5 + 1e-9
    assert max(sleep.slept) <= BACKOFF_MAX
    assert timeouts[-1] < ATTEMPT_TIMEOUT  # the last attempt gets only what is left of the deadline


async def test_a_final_error_is_not_retried() -> None:
    clock = FakeClock()
    sleep = Sleeper(clock)
    calls = 0

    async def attempt(timeout: float) -> None:
        nonlocal calls
        calls += 1
        raise BadRequestError(code=400, err_code=10003, description="bad subject")

    with pytest.raises(BadRequestError):
        await within_deadline(attempt, clock.now() + 30, clock, sleep)
    assert calls == 1 and sleep.slept == []


def test_a_spent_deadline_leaves_one_short_attempt() -> None:
    state = RetryState(deadline=10.0)
    assert state.attempt_timeout(now=12.0) == 0.001
    assert state.after_failure(NatsTimeout(), now=12.0) is None


def test_url_lists_every_node() -> None:
    assert servers("nats://a:4222, nats://b:4223,,nats://c:4224") == ["nats://a:4222", "nats://b:4223",
                                                                       "nats://c:4224"]
    assert servers("nats://127.0.0.1:4222") == ["nats://127.0.0.1:4222"]
    for hostile in ("", " , ,", ","):
        with pytest.raises(LogError, match="names no server"):
            servers(hostile)


def test_the_log_keeps_the_node_list() -> None:
    # (`${NAME}` in the url is expanded when the config is loaded: tests/unit/test_config_env.py)
    log = JetStreamLog(IngestLog(backend="jetstream", url="nats://a:4222, nats://b:4223,", replicas=3), "r",
                       FakeClock())
    assert log.servers == ["nats://a:4222", "nats://b:4223"]


@pytest.mark.parametrize("replicas", [0, 6, -1])
def test_replicas_is_one_to_five(replicas: int) -> None:
    with pytest.raises(ValueError, match="replicas"):
        IngestLog(backend="jetstream", replicas=replicas)
