"""Transition tables: the next state, or one precise error that changes nothing."""

from __future__ import annotations

import pytest

from meshbatch.batching.batch import BATCH_LIFECYCLE
from meshbatch.core.transitions import IllegalTransition, Transitions, step
from meshbatch.upstream.breaker import BREAKER

DOOR = Transitions("door", {("shut", "open"): "ajar", ("ajar", "close"): "shut", ("ajar", "break"): "broken"})


def test_a_move_in_the_table_gives_the_next_state() -> None:
    assert DOOR.step("d1", "shut", "open") == "ajar"
    assert step(DOOR, "d1", "ajar", "break") == "broken"
    assert DOOR.states() == {"shut", "ajar", "broken"}
    assert DOOR.allowed("ajar") == ["break", "close"]


def test_a_move_absent_from_the_table_raises_one_precise_error() -> None:
    with pytest.raises(IllegalTransition) as info:
        DOOR.step("d1", "shut", "close")
    error = info.value
    assert (error.kind, error.name, error.state, error.event, error.allowed) == ("door", "d1", "shut", "close",
                                                                                  ["open"])
    assert str(error) == "door d1: cannot close when shut; allowed: open"
    with pytest.raises(IllegalTransition, match="door d1: cannot open when broken; the door is finished"):
        DOOR.step("d1", "broken", "open")


def test_the_breaker_and_the_batch_share_the_one_error() -> None:
    assert BREAKER.step("c/a", "closed", "trip") == "open"
    assert BATCH_LIFECYCLE.step("b1", "open", "seal") == "sealed"
    with pytest.raises(IllegalTransition, match="batch b1: cannot send a batch that is open"):
        BATCH_LIFECYCLE.step("b1", "open", "send")
    with pytest.raises(IllegalTransition, match="breaker c/a: cannot probe when closed"):
        BREAKER.step("c/a", "closed", "probe")
