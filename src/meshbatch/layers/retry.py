"""Retries: which failures are retried (the policy), and the layer that retries plain requests.

Conditions (Envoy's names):
- `5xx`: any 5xx answer, and any attempt that got no answer (connect failure, reset, per-try timeout, a
  malformed answer);
- `gateway-error`: 502, 503 and 504 answers, and the same attempts without an answer;
- `reset`: the connection closed or was reset before the answer was complete;
- `connect-failure`: no connection could be made (refused, timed out): the request was never sent;
- `retriable-4xx`: 409; `retriable-status-codes`: the statuses listed in `retriable_status_codes`;
- gRPC statuses (Envoy's `x-envoy-retry-grpc-on`): `cancelled`, `deadline-exceeded`, `internal`,
  `resource-exhausted`, `unavailable`: an HTTP 200 answer whose grpc-status (in its head for a trailers-only
  answer, else in its trailers) is one of them. An answer streamed to the caller (larger than the buffer) is
  judged on its head alone: its trailers come after its body.
Never retried: refusals of this proxy (a circuit breaker, a full pool, no healthy endpoint) and a spent
deadline. A retry goes to another endpoint while one is available, after a jittered exponential backoff,
only within the route's deadline and only when the cluster's retry budget allows it. A request whose body is
larger than `max_replay_bytes` is sent once. An answer after retries carries `x-meshbatch-attempts`.

A streamed answer (larger than the listener's buffer limit) is judged on its status like any other: nothing
of it has reached the caller yet, so one to retry is dropped (its connection closed) and the retry goes out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from meshbatch.config.plain import Retry
from meshbatch.config.plain.layers import GRPC_RETRY_CONDITIONS
from meshbatch.core.backoff import Backoff
from meshbatch.errors import (
    BadGateway,
    ConnectFailed,
    ConnectTimeout,
    GatewayTimeout,
    ProxyError,
    UpstreamReset,
)
from meshbatch.grpc.replies import status_of
from meshbatch.grpc.status import GrpcStatus
from meshbatch.http.message import Response
from meshbatch.http.serialize import local_reply
from meshbatch.layers.metrics import LayerMetrics
from meshbatch.layers.timeout import route_deadline
from meshbatch.service import Call, Service
from meshbatch.upstream.exchange import Attempt
from meshbatch.upstream.guard import ClusterGuard
from meshbatch.upstream.target import Target

ATTEMPTS_HEADER = b"x-meshbatch-attempts"
NO_ANSWER = frozenset({"5xx", "gateway-error"})


def _statuses(config: Retry) -> frozenset[int]:
    on = set(config.retry_on)
    codes: set[int] = set()
    if "5xx" in on:
        codes.update(range(500, 600))
    if "gateway-error" in on:
        codes.update((502, 503, 504))
    if "retriable-4xx" in on:
        codes.add(409)
    if "retriable-status-codes" in on:
        codes.update(config.retriable_status_codes)
    return frozenset(codes)


def _grpc_statuses(config: Retry) -> frozenset[int]:
    return frozenset(int(GrpcStatus.from_label(on)) for on in config.retry_on if on in GRPC_RETRY_CONDITIONS)


class RetryPolicy:
    """A route's retry rules and counters; shared by the plain retry layer and the batcher's item retries."""

    __slots__ = ("_on", "backoff", "config", "grpc_statuses", "max_replay", "metrics", "num_retries", "route",
                 "statuses")

    def __init__(self, route: str, config: Retry, metrics: LayerMetrics | None = None,
                 rng: Callable[[], float] | None = None) -> None:
        self.route = route
        self.config = config
        self.metrics = metrics
        self.num_retries = config.num_retries
        self.max_replay = config.max_replay_bytes
        self.backoff = Backoff.from_ms(config.backoff.base_ms, config.backoff.max_ms, rng)
        self.statuses = _statuses(config)
        self.grpc_statuses = _grpc_statuses(config)
        self._on = frozenset(config.retry_on)

    def retriable_status(self, status: int) -> bool:
        return status in self.statuses

    def retriable_response(self, response: Response) -> bool:
        """By its HTTP status, or by its grpc-status when the policy names gRPC conditions."""
        if response.status in self.statuses:
            return True
        if not self.grpc_statuses or response.status != 200:
            return False
        found = status_of(response)
        return found is not None and found[0] in self.grpc_statuses

    def retriable_error(self, error: ProxyError) -> bool:
        on = self._on
        if isinstance(error, ConnectFailed | ConnectTimeout):
            return "connect-failure" in on or bool(on & NO_ANSWER)
        if isinstance(error, UpstreamReset):
            return "reset" in on or bool(on & NO_ANSWER)
        if isinstance(error, GatewayTimeout):
            return error.reason == "upstream_timeout" and bool(on & NO_ANSWER)
        if isinstance(error, BadGateway):
            return bool(on & NO_ANSWER)
        return False

    def admit(self, guard: ClusterGuard, in_flight: int, number: int, units: int, now: float,
              deadline: float) -> tuple[int, float, str]:
        """Whether retry `number` (0-based) of `units` may go: (units allowed, backoff, reason when none).
        A positive answer has taken its units from the budget; bracket the retry's sending with
        `guard.begin_retry()` and `guard.end_retry()`."""
        delay = self.backoff.retry(number, self.num_retries)
        if delay is None:
            return 0, 0.0, "exhausted"
        if now + delay >= deadline:
            return 0, 0.0, "deadline"
        allowed, reason = guard.retry_allowance(now, in_flight)
        if allowed < 1:
            return 0, 0.0, reason
        allowed = min(allowed, units)
        guard.take_retry(now, allowed)
        return allowed, delay, ""

    def count(self, kind: str, units: int = 1) -> None:
        if self.metrics is not None:
            self.metrics.attempts.inc((self.route, kind), units)

    def deny(self, reason: str, units: int = 1) -> None:
        if self.metrics is not None:
            self.metrics.retries_denied.inc((self.route, reason), units)


class RetryLayer:
    """Retries a plain request on the conditions of its policy (see the module docstring)."""

    __slots__ = ("default", "inner", "loop", "policy", "timeout")

    def __init__(self, inner: Service, policy: RetryPolicy, default: Target, timeout: float,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.inner = inner
        self.policy = policy
        self.default = default
        self.timeout = timeout
        self.loop = loop

    async def __call__(self, call: Call) -> Response:
        policy, loop = self.policy, self.loop
        attempt = call.attempt = Attempt()
        target = call.target or self.default
        attempt.target = target
        guard = target.guard
        assert guard is not None, "the targets of a route that retries have a guard (its retry budget)"
        deadline = route_deadline(call, self.timeout, loop.time())
        replayable = len(call.request.body) <= policy.max_replay
        policy.count("first")
        reserved = False
        try:
            while True:
                failure: Response | ProxyError
                try:
                    response = await self.inner(call)
                except ProxyError as error:
                    if not policy.retriable_error(error):
                        raise
                    failure = error
                else:
                    if not policy.retriable_response(response):
                        return _counted(response, attempt)
                    failure = response
                finally:
                    if reserved:
                        reserved = False
                        guard.end_retry()
                upload = call.request.upload
                if not replayable or (upload is not None and upload.attached):  # a body sent as it came: once
                    policy.deny("replay_limit")
                    return _give_up(failure, attempt)
                now = loop.time()
                in_flight = sum(e.active for e in target.cluster.hosts.all)
                allowed, delay, reason = policy.admit(guard, in_flight, attempt.number, 1, now, deadline)
                if not allowed:
                    policy.deny(reason)
                    return _give_up(failure, attempt)
                if delay > 0:
                    await asyncio.sleep(delay)
                if isinstance(failure, Response) and failure.stream is not None:
                    failure.stream.abandon()  # its body will never be read: the connection cannot be reused
                guard.begin_retry()
                reserved = True
                attempt.number += 1
                policy.count("retry")
        finally:
            if reserved:
                guard.end_retry()


def _counted(response: Response, attempt: Attempt) -> Response:
    if attempt.number:
        response.headers.append((ATTEMPTS_HEADER, str(attempt.number + 1).encode()))
    return response


def _give_up(failure: Response | ProxyError, attempt: Attempt) -> Response:
    """The last failure as the answer (an error becomes its local reply, to carry the attempts header)."""
    if isinstance(failure, ProxyError):
        if not attempt.number:
            raise failure
        failure = local_reply(failure)
    return _counted(failure, attempt)


__all__ = ["ATTEMPTS_HEADER", "RetryLayer", "RetryPolicy"]
