"""The bisection plan shared by the batcher and the ingest flusher: bounded by a budget, or not at all."""

from __future__ import annotations

from meshbatch.batching.bisection import ALONE, SPLIT, UNRESOLVED, Bisection


def _search(bisection: Bisection, size: int, poison: set[int]) -> list[list[int]]:
    """Run the plan against a fake upstream that refuses any group holding a poison index; the groups sent."""
    sent: list[list[int]] = []
    assert bisection.refused(list(range(size))) in (SPLIT, ALONE, UNRESOLVED)
    while (group := bisection.next()) is not None:
        sent.append(group)
        if poison & set(group):
            bisection.refused(group)
    return sent


def test_an_unbounded_plan_isolates_every_poison_item() -> None:
    bisection = Bisection(None)
    sent = _search(bisection, 16, {3, 4, 5, 11})
    assert bisection.isolated == 4 and bisection.unresolved == 0 and bisection.calls_left is None
    assert [3] in sent and [11] in sent
    assert sent[:2] == [[0, 1, 2, 3, 4, 5, 6, 7], [0, 1, 2, 3]]  # depth first, left half first


def test_a_bounded_plan_stops_when_its_budget_is_spent() -> None:
    bisection = Bisection(4)
    _search(bisection, 16, {3, 4, 5, 11})
    assert bisection.calls == 4 and bisection.calls_left == 0 and bisection.unresolved > 0


def test_an_unused_group_gives_its_call_back_unless_unbounded() -> None:
    bounded, unbounded = Bisection(2), Bisection(None)
    for plan in (bounded, unbounded):
        assert plan.refused([0, 1]) == SPLIT
        assert plan.next() == [0]
        plan.unused()
    assert bounded.calls_left == 1 and bounded.calls == 0
    assert unbounded.calls_left is None and unbounded.calls == 0
