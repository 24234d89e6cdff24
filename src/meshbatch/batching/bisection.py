"""Bisection: the plan that splits a refused batch to isolate the items at fault, pure.

A batch refused as a whole for something in its data (the upstream's 400/413/422, a sink's `BatchRejected`) is
split in halves, each half sent again; a refused half is split again, until a part is accepted or one item is
refused alone. One plan for both users of the batching core: the batcher (batching/isolate.py, within a budget of
upstream calls) and the ingest flusher (ingest/flusher.py, with no budget: every event is delivered or parked).
"""

from __future__ import annotations

# What `Bisection.refused` decided for a refused group.
SPLIT, ALONE, UNRESOLVED = "split", "alone", "unresolved"


class Bisection:
    """The plan of one batch's isolation, pure: depth first, left half first, within a budget of calls.

    `refused(group)` is told of a group the upstream refused as a whole (indexes into the batch) and answers
    ALONE (one item: the refusal is its answer), SPLIT (its halves go next; two calls taken from the budget) or
    UNRESOLVED (the budget cannot pay for both halves: its items keep the batch's refusal). `next()` gives the
    next group to send; `unused()` gives back the call of a group that was not sent (nobody waited on it). A
    budget of None never runs out (every group is split until its items are alone).
    """

    __slots__ = ("_todo", "calls", "calls_left", "isolated", "splits", "unresolved")

    def __init__(self, budget: int | None) -> None:
        self.calls_left = budget
        self.calls = self.splits = self.isolated = self.unresolved = 0
        self._todo: list[list[int]] = []

    def refused(self, group: list[int]) -> str:
        if len(group) == 1:
            self.isolated += 1
            return ALONE
        left = self.calls_left
        if left is not None:
            if left < 2:
                self.unresolved += len(group)
                return UNRESOLVED
            self.calls_left = left - 2
        self.splits += 1
        middle = len(group) // 2
        self._todo.append(group[middle:])
        self._todo.append(group[:middle])
        return SPLIT

    def next(self) -> list[int] | None:
        if not self._todo:
            return None
        self.calls += 1
        return self._todo.pop()

    @property
    def active(self) -> bool:
        """Whether the batch was refused in a way that isolation acted on."""
        return bool(self.calls or self.isolated or self.unresolved)

    def unused(self) -> None:
        self.calls -= 1
        if self.calls_left is not None:
            self.calls_left += 1

    def __repr__(self) -> str:
        return (f"<Bisection calls={self.calls} left={self.calls_left} splits={self.splits} "
                f"isolated={self.isolated} unresolved={self.unresolved} todo={len(self._todo)}>")


__all__ = ["ALONE", "SPLIT", "UNRESOLVED", "Bisection"]
