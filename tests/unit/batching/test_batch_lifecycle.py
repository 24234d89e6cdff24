import pytest
from batching_support import item

from meshbatch.batching.batch import (
    BATCHED,
    DONE,
    FAILED,
    IN_FLIGHT,
    OPEN,
    REMOVED,
    SEALED,
    TRANSITIONS,
    Batch,
    IllegalTransition,
)


def test_happy_path_open_sealed_in_flight_done():
    batch = Batch("b1", (b"t",), 1.0)
    a, b = item(b"[1]", key=(b"t",)), item(b"2", key=(b"t",))
    batch.add(a)
    batch.add(b)
    assert batch.state == OPEN and batch.size == 2 and batch.bytes == 4
    assert a.state == BATCHED and a.batch is batch
    batch.seal("items", 2.0)
    assert batch.state == SEALED and batch.reason == "items" and batch.sealed_at == 2.0
    assert dict(batch.reply_headers) == {b"x-meshbatch-batch-id": b"b1", b"x-meshbatch-batch-size": b"2",
                                         b"x-meshbatch-flush": b"items"}
    batch.send(3.0)
    assert batch.state == IN_FLIGHT and batch.sent_at == 3.0
    batch.finish(4.0)
    assert batch.state == DONE and batch.done_at == 4.0


def test_remove_while_open_only():
    batch = Batch("b2", (), 0.0)
    a = item(b"123")
    batch.add(a)
    batch.remove(a)
    assert batch.size == 0 and batch.bytes == 0 and a.state == REMOVED and a.batch is None
    batch.add(item())
    batch.seal("wait", 1.0)
    with pytest.raises(IllegalTransition, match="cannot remove a batch that is sealed"):
        batch.remove(batch.items[0])
    with pytest.raises(IllegalTransition, match="cannot add"):
        batch.add(item())


@pytest.mark.parametrize(("setup", "event"), [
    ([], "send"),
    ([], "finish"),
    (["seal"], "seal"),
    (["seal"], "finish"),
    (["seal", "send"], "send"),
    (["seal", "send", "finish"], "fail"),
    (["seal", "fail"], "send"),
])
def test_illegal_transitions_raise_one_precise_error(setup, event):
    batch = Batch("b9", (), 0.0)
    batch.add(item())
    steps = {"seal": lambda: batch.seal("wait", 1.0), "send": lambda: batch.send(1.0),
             "finish": lambda: batch.finish(1.0), "fail": lambda: batch.fail(1.0)}
    for step in setup:
        steps[step]()
    state = batch.state
    with pytest.raises(IllegalTransition) as info:
        steps[event]()
    assert info.value.name == "b9" and info.value.state == state and info.value.event == event
    assert f"batch b9: cannot {event} a batch that is {state}" in str(info.value)
    assert batch.state == state  # a refused event changes nothing


def test_failed_from_sealed_or_in_flight():
    for path in (["seal"], ["seal", "send"]):
        batch = Batch("b", (), 0.0)
        batch.add(item())
        batch.seal("drain", 0.0)
        if "send" in path:
            batch.send(0.0)
        batch.fail(1.0)
        assert batch.state == FAILED


def test_transition_table_is_closed_over_states():
    states = {OPEN, SEALED, IN_FLIGHT, DONE, FAILED}
    assert {s for s, _ in TRANSITIONS} <= states and set(TRANSITIONS.values()) <= states
    assert not any(s in (DONE, FAILED) for s, _ in TRANSITIONS)


def test_keys_and_reasons_are_checked():
    batch = Batch("b", (b"a",), 0.0)
    with pytest.raises(ValueError, match="differs from the batch key"):
        batch.add(item(key=(b"b",)))
    batch.add(item(key=(b"a",)))
    with pytest.raises(ValueError, match="unknown flush reason"):
        batch.seal("because", 0.0)
    assert batch.state == OPEN
