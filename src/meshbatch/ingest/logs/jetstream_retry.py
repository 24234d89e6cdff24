"""Appending to a JetStream stream through a failover: which publish errors are worth another try, and the
retry loop that keeps trying until the caller's deadline.

On a cluster, a publish fails for a while when the node the client is connected to dies (the client moves to
another node at once, but the publish in flight gets no ack), or when the stream's leader dies (no node acks
until the others have elected a new one: a few seconds). Both end by themselves, so the append is tried again,
each attempt waiting at most `ATTEMPT_TIMEOUT` for its ack, with a short capped backoff in between, until the
caller's deadline; only then is the error returned (503 to the producer). A retry is safe: each message
carries `Nats-Msg-Id` = the event id, and the stream stores a message id once within its duplicate window (the
ack of a duplicate says so, and counts as stored).

Not retried: a full stream (its own answer, 429), a refused request (a bad subject or configuration), a
connection this process closed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from nats.errors import ConnectionClosedError, NoRespondersError, OutboundBufferLimitError, StaleConnectionError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import APIError, NoStreamResponseError

from meshbatch.clock import Clock

T = TypeVar("T")

ATTEMPT_TIMEOUT = 1.0  # a live leader acks in milliseconds; past this, the attempt is given up and made again
BACKOFF_INITIAL = 0.02
BACKOFF_MAX = 0.25
# JetStream's API errors that end by themselves: the cluster or the stream has no leader (yet), or is catching up
TEMPORARY_CODES = {10004, 10008, 10009}  # cluster incomplete, temporarily unavailable, not the leader
TRANSIENT = (NatsTimeout, TimeoutError, NoRespondersError, NoStreamResponseError, StaleConnectionError,
             OutboundBufferLimitError, ConnectionResetError, BrokenPipeError)


def transient(exc: BaseException) -> bool:
    """Whether a failed publish may succeed if made again shortly (the failover is still going on)."""
    if isinstance(exc, ConnectionClosedError):
        return False
    if isinstance(exc, APIError):
        return exc.code == 503 or exc.err_code in TEMPORARY_CODES
    return isinstance(exc, TRANSIENT)


class RetryState:
    """The sans-I/O core of the loop: given a failure at `now`, how long to wait before the next attempt, or
    None when the deadline leaves no room for one."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.delay = BACKOFF_INITIAL
        self.attempts = 0

    def attempt_timeout(self, now: float) -> float:
        self.attempts += 1
        return max(0.001, min(ATTEMPT_TIMEOUT, self.deadline - now))

    def after_failure(self, exc: BaseException, now: float) -> float | None:
        if not transient(exc) or now + self.delay >= self.deadline:
            return None
        delay = self.delay
        self.delay = min(BACKOFF_MAX, self.delay * 2)
        return delay


async def within_deadline(attempt: Callable[[float], Awaitable[T]], deadline: float, clock: Clock,
                          sleep: Callable[[float], Awaitable[None]]) -> T:
    """`attempt(timeout)` until it succeeds, or fails for good, or the deadline (clock time) leaves no room."""
    state = RetryState(deadline)
    while True:
        try:
            return await attempt(state.attempt_timeout(clock.now()))
        except Exception as exc:
            delay = state.after_failure(exc, clock.now())
            if delay is None:
                if state.attempts > 1:
                    exc.add_note(f"after {state.attempts} attempts")
                raise
        await sleep(delay)


__all__ = ["ATTEMPT_TIMEOUT", "RetryState", "transient", "within_deadline"]
