"""Item-level retries of a batch: only the items that failed are sent again, as a smaller batch, elsewhere.

After each upstream exchange, an item is retried when its outcome matches the route's retry conditions: the
status of the whole answer when the batch (or the part of it that carried the item, see batching/isolate.py)
was refused as a whole (a 503 fails every item), else the item's own status (the envelope codec gives each item
one), or the error when no answer came. Items whose callers
have all gone (answered at their deadline, or disconnected) are not sent again. A retry waits the route's
backoff, stays within the latest deadline of its callers, costs one unit of the cluster's retry budget per
item (when the budget allows fewer, the items with the earliest deadlines go), and goes to an endpoint the
batch has not failed on (the guarded sender reads the tried endpoints from the `ATTEMPT` context variable).
Each caller gets the outcome of the last attempt that carried its item.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple, Protocol

from meshbatch.batching.batch import Item, Outcome
from meshbatch.batching.codecs.base import ItemRequest
from meshbatch.errors import ProxyError
from meshbatch.upstream.exchange import ATTEMPT, Attempt

if TYPE_CHECKING:
    from meshbatch.upstream.guard import ClusterGuard

class Answer(NamedTuple):
    """What one exchange with the upstream gave a list of items (the batch, or the part of it sent again)."""

    status: int  # the status of the first call
    outcomes: Sequence[Outcome]  # one per item
    # Per item, the status that decides a retry: that of the call that refused it as a whole, else its own.
    # None: one call, whose status (when not 2xx) or each result's own status decides.
    statuses: Sequence[int] | None = None


Exchange = Callable[[list[Item], bytes], Awaitable[Answer]]
Encode = Callable[[Sequence[ItemRequest]], bytes]


class RetryRules(Protocol):
    """What the batcher needs of a route's retry policy (meshbatch.layers.retry.RetryPolicy)."""

    num_retries: int

    def retriable_status(self, status: int) -> bool: ...

    def retriable_error(self, error: ProxyError) -> bool: ...

    def admit(self, guard: ClusterGuard, in_flight: int, number: int, units: int, now: float,
              deadline: float) -> tuple[int, float, str]: ...

    def count(self, kind: str, units: int = 1) -> None: ...

    def deny(self, reason: str, units: int = 1) -> None: ...


def _deadline(item: Item) -> float:
    """The latest deadline among the callers still waiting on `item` (-inf when none waits)."""
    return max((w.deadline for w in item.waiters if not w.future.done()), default=float("-inf"))


async def send_with_retries(items: list[Item], body: bytes, exchange: Exchange, encode: Encode,
                            rules: RetryRules, now: Callable[[], float]) -> tuple[int, list[Outcome]]:
    """Send `items` (encoded as `body`), then again the ones that failed; the last status and each outcome."""
    attempt = Attempt(units=len(items))
    token = ATTEMPT.set(attempt)
    outcomes: list[Outcome] = [ProxyError("internal_error", "the item was never sent")] * len(items)
    pending = list(range(len(items)))
    status = 0
    guard: ClusterGuard | None = None
    rules.count("first", len(items))
    try:
        while True:
            again: list[int] = []
            try:
                status, results, statuses = await exchange([items[i] for i in pending], body)
            except ProxyError as error:
                status = 0
                for i in pending:
                    outcomes[i] = error
                if rules.retriable_error(error):
                    again = pending
            else:
                whole = not 200 <= status < 300
                for n, (i, result) in enumerate(zip(pending, results, strict=True)):
                    outcomes[i] = result
                    if isinstance(result, ProxyError):  # a part of the batch got no answer
                        retriable = rules.retriable_error(result)
                    else:
                        retriable = rules.retriable_status(statuses[n] if statuses is not None
                                                           else status if whole else result.status)
                    if retriable:
                        again.append(i)
            finally:
                if guard is not None:
                    guard.end_retry()
                    guard = None
            waiting = [i for i in again if _deadline(items[i]) > float("-inf")]
            if len(waiting) < len(again):
                rules.deny("no_caller", len(again) - len(waiting))
            target = attempt.target
            if not waiting or target is None or target.guard is None:  # (a route that retries has guards)
                break
            waiting.sort(key=lambda i: _deadline(items[i]))
            in_flight = sum(e.active for e in target.cluster.hosts.all)
            allowed, delay, reason = rules.admit(target.guard, in_flight, attempt.number, len(waiting), now(),
                                                 _deadline(items[waiting[-1]]))
            if not allowed:
                rules.deny(reason, len(waiting))
                break
            if allowed < len(waiting):
                rules.deny("budget", len(waiting) - allowed)
                waiting = waiting[:allowed]
            if delay > 0:
                await asyncio.sleep(delay)
            guard = target.guard
            guard.begin_retry()
            attempt.number += 1
            rules.count("retry", len(waiting))
            pending = sorted(waiting)
            body = encode([items[i] for i in pending])
    finally:
        if guard is not None:
            guard.end_retry()
        ATTEMPT.reset(token)
    return status, outcomes


__all__ = ["Answer", "RetryRules", "send_with_retries"]
