"""Isolating the items at fault when the upstream refuses a whole batch for something in its request.

One caller's item can make the upstream refuse the batch that carries it (400 for a body it cannot read, 413 for
one too large, 415, 422): the other callers of that batch did nothing wrong, and a proxy that answers them all
with the refusal lets any caller fail its neighbours at will. With `batch.isolate: bisect` (the default) such a
refusal is not the answer: the batch is split in halves and each half sent again; a refused half is split again,
until the upstream accepts a part (its callers get their own answers) or refuses one item alone (that caller,
and only it, gets the refusal: the upstream's status, body and content type, with `x-meshbatch-isolated: true`).
A batch of one item refused is that caller's answer at once. The ingest flusher isolates events the same way.

Bounds, so that no caller can turn one batch into many upstream calls: each split costs two calls, and a batch
spends at most `max_calls` calls on isolation (by default 4 x ceil(log2 n): one item at fault among n costs
2 x ceil(log2 n), so two are always isolated). When the budget is spent, the items not yet answered keep the
refusal of the batch (502 `upstream_status_<code>`, as without isolation). The parts go one after the other on
the batch's own in-flight slot, so `max_in_flight` still bounds the calls in flight. Before each part is sent,
callers whose deadline has passed are answered 504, and an item nobody waits for any more is not sent. The
callers of a part are answered as soon as their answer is final (not one the route's retry policy sends again),
without waiting for the rest of the search.

Only statuses that blame the request split a batch (`statuses`, 4xx only, never 408 or 429): 5xx and 429 say
the upstream is busy or broken, and the retry policy handles them, also for a part (an item of a part refused
with 503 is retried like one of a batch refused with 503).

`Bisection` (batching/bisection.py) is the plan, pure: which group goes next, what the budget allows. `bisect`
is its asyncio loop here.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from meshbatch.batching.batch import Item, Outcome
from meshbatch.batching.bisection import ALONE, SPLIT, UNRESOLVED, Bisection
from meshbatch.batching.codecs.base import ItemRequest, ItemResult
from meshbatch.batching.retry import Answer, RetryRules
from meshbatch.errors import GatewayTimeout, ProxyError
from meshbatch.http.message import Headers, Response
from meshbatch.upstream.exchange import Attempt

if TYPE_CHECKING:
    from meshbatch.config.plain import Isolate

ISOLATED_HEADER = (b"x-meshbatch-isolated", b"true")
# What of the refusal's headers reaches the caller (a gRPC refusal's status and message: the gRPC codec's answer
# has them in its head, batching/codecs/grpc_answers.py).
_PASSED_ON = frozenset({b"content-type", b"retry-after", b"grpc-status", b"grpc-message"})


class IsolatePolicy:
    """A route's `batch.isolate`, ready for the dispatcher."""

    __slots__ = ("max_calls", "statuses")

    def __init__(self, statuses: Iterable[int], max_calls: int | None = None) -> None:
        self.statuses = frozenset(statuses)
        self.max_calls = max_calls

    @classmethod
    def from_config(cls, config: Isolate) -> IsolatePolicy | None:
        """None when isolation is off."""
        return None if config.mode == "off" else cls(config.statuses, config.max_calls)

    def budget(self, size: int) -> int:
        """Extra upstream calls a batch of `size` items may spend on isolation."""
        if self.max_calls is not None:
            return self.max_calls
        return 4 * math.ceil(math.log2(size)) if size > 1 else 0

    def summary(self) -> dict[str, object]:
        return {"mode": "bisect", "statuses": sorted(self.statuses),
                "max_calls": "auto" if self.max_calls is None else self.max_calls}


def refusal(response: Response) -> ItemResult:
    """The upstream's refusal of a batch of one item, as that item's answer: its own, not the proxy's."""
    headers: Headers = [(name, value) for name, value in response.headers if name in _PASSED_ON]
    headers.append(ISOLATED_HEADER)
    return ItemResult(response.status, response.body, headers)


def part_attempt(parent: Attempt | None) -> Attempt:
    """The attempt context of a part: the batch's target (a traffic split's choice holds for its parts), any
    endpoint (a refusal blames the request, not the endpoint that gave it), and not a first attempt, so the
    guarded sender neither deposits in the retry budget nor mirrors it again."""
    attempt = Attempt(units=0)
    attempt.number = max(1, parent.number) if parent is not None else 1
    attempt.target = parent.target if parent is not None else None
    return attempt


def still_waiting(item: Item, now: float) -> bool:
    """Before a part is sent: the callers of `item` past their deadline get 504 (the part would answer them
    late); whether any caller still waits for it."""
    waiting = False
    for waiter in item.waiters:
        if waiter.future.done():
            continue
        if waiter.deadline <= now:
            waiter.resolve(GatewayTimeout("upstream_timeout", "the batch outlived the caller's deadline"))
        else:
            waiting = True
    return waiting


def answer_final(retry: RetryRules | None, item: Item, outcome: Outcome, status: int) -> None:
    """A part's outcome reaches the callers of `item` now, unless the retry policy may send the item again."""
    if retry is not None and (retry.retriable_error(outcome) if isinstance(outcome, ProxyError)
                              else retry.retriable_status(status)):
        return
    for waiter in item.waiters:
        waiter.resolve(outcome)


Call = Callable[[list[Item], bytes], Awaitable[tuple[Response, list[ItemResult]]]]
Encode = Callable[[Sequence[ItemRequest]], bytes]


async def bisect(items: list[Item], response: Response, results: list[ItemResult], bisection: Bisection,
                 policy: IsolatePolicy, call: Call, encode: Encode, live: Callable[[Item], bool],
                 answer: Callable[[Item, Outcome, int], None]) -> Answer:
    """Isolate the items at fault in `items`, which the upstream refused as a whole with `response` (decoded
    into `results`, the refusal for each). `call` sends a part; `live(item)` answers the callers of the item
    whose deadline has passed and says whether any is left; `answer(item, outcome, status)` is told each
    outcome as soon as it is known (the status deciding a retry)."""
    status = response.status
    outcomes: list[Outcome] = list(results)
    statuses = [status] * len(items)
    if bisection.refused(list(range(len(items)))) == ALONE:
        outcomes[0] = refusal(response)
        return Answer(status, outcomes, statuses)
    blame = policy.statuses
    while (group := bisection.next()) is not None:
        part = [i for i in group if live(items[i])]
        if not part:
            bisection.unused()
            continue
        members = [items[i] for i in part]
        try:
            reply, replies = await call(members, encode(members))
        except ProxyError as error:  # no answer for this part: its items alone get the error
            for i in part:
                outcomes[i] = error
                statuses[i] = 0
                answer(items[i], error, 0)
            continue
        code = reply.status
        if code in blame:
            verdict = bisection.refused(part)
            if verdict == ALONE:
                i = part[0]
                outcomes[i] = refusal(reply)
                statuses[i] = code
                answer(items[i], outcomes[i], code)
            elif verdict == UNRESOLVED:
                for i, result in zip(part, replies, strict=True):
                    outcomes[i] = result
                    statuses[i] = code
            continue
        whole = not 200 <= code < 300
        for i, result in zip(part, replies, strict=True):
            outcomes[i] = result
            statuses[i] = code if whole else result.status
            answer(items[i], result, statuses[i])
    return Answer(status, outcomes, statuses)


__all__ = ["ALONE", "ISOLATED_HEADER", "SPLIT", "UNRESOLVED", "Answer", "Bisection", "IsolatePolicy",
           "answer_final", "bisect", "part_attempt", "refusal", "still_waiting"]
