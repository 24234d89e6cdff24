"""The pure accumulator, on explicit times: no loop, no sleeping."""

from batching_support import item

from meshbatch.batching.accumulator import Accumulator
from meshbatch.batching.batch import BATCHED, HIGH, LOW, NORMAL, QUEUED, REMOVED
from meshbatch.clock import FakeClock


def bodies(batch):
    return [it.body for it in batch.items]


def test_free_slot_takes_the_queue_at_once_when_hold_is_zero():
    acc = Accumulator(max_items=10, max_bytes=1000)
    clock = FakeClock()
    for n in range(3):
        acc.add(item(str(n).encode(), arrived=clock.now()), clock.now())
    assert acc.next_deadline(slots_free=True) <= clock.now()
    batches, expired = acc.drain_ready(clock.now(), limit=1)
    assert not expired and len(batches) == 1
    assert bodies(batches[0]) == [b"0", b"1", b"2"] and batches[0].reason == "wait"
    assert acc.queued == 0 and not acc.queues and acc.next_deadline(True) is None


def test_size_cap_splits_and_names_items_as_reason():
    acc = Accumulator(max_items=2, max_bytes=1000)
    for n in range(5):
        acc.add(item(str(n).encode()), 0.0)
    batches, _ = acc.drain_ready(0.0, limit=10)
    assert [bodies(b) for b in batches] == [[b"0", b"1"], [b"2", b"3"], [b"4"]]
    assert [b.reason for b in batches] == ["items", "items", "wait"]


def test_limit_is_the_number_of_free_slots():
    acc = Accumulator(max_items=2, max_bytes=1000)
    for n in range(6):
        acc.add(item(str(n).encode()), 0.0)
    assert len(acc.drain_ready(0.0, limit=2)[0]) == 2
    assert acc.queued == 2
    assert acc.drain_ready(0.0, limit=0) == ([], [])


def test_bytes_cap_and_an_oversized_item_goes_alone():
    acc = Accumulator(max_items=100, max_bytes=10)
    acc.add(item(b"x" * 4), 0.0)
    acc.add(item(b"y" * 4), 0.0)
    acc.add(item(b"z" * 4), 0.0)
    acc.add(item(b"w" * 30), 0.0)
    batches, _ = acc.drain_ready(0.0, limit=5)
    assert [bodies(b) for b in batches] == [[b"xxxx", b"yyyy"], [b"zzzz"], [b"w" * 30]]
    assert batches[0].reason == "bytes" and batches[2].reason == "bytes"


def test_hold_keeps_a_queue_until_min_wait_then_wait():
    clock = FakeClock()
    acc = Accumulator(max_items=10, max_bytes=1000, hold=0.005)
    acc.add(item(arrived=clock.now()), clock.now())
    clock.advance(0.002)
    acc.add(item(arrived=clock.now()), clock.now())
    assert acc.drain_ready(clock.now(), limit=1) == ([], [])
    assert acc.next_deadline(True) == 1000.005
    clock.advance(0.003)
    batches, _ = acc.drain_ready(clock.now(), limit=1)
    assert len(batches) == 1 and batches[0].size == 2 and batches[0].reason == "wait"


def test_a_full_queue_does_not_wait_for_the_hold():
    acc = Accumulator(max_items=3, max_bytes=1000, hold=10.0)
    for _ in range(3):
        acc.add(item(), 0.0)
    assert acc.next_deadline(True) == float("-inf")
    batches, _ = acc.drain_ready(0.0, limit=1)
    assert batches[0].reason == "items"


def test_without_free_slots_only_expiry_matters():
    acc = Accumulator(max_items=10, max_bytes=1000, hold=0.001)
    acc.add(item(deadline=5.0, waiters=[5.0]), 0.0)
    assert acc.next_deadline(slots_free=False) == 5.0
    assert acc.next_deadline(slots_free=True) == 0.001


def test_priorities_high_first_within_a_key():
    acc = Accumulator(max_items=2, max_bytes=1000)
    acc.add(item(b"low", priority=LOW, arrived=0.0), 0.0)
    acc.add(item(b"normal", priority=NORMAL, arrived=1.0), 1.0)
    acc.add(item(b"high", priority=HIGH, arrived=2.0), 2.0)
    batches, _ = acc.drain_ready(2.0, limit=2)
    assert [bodies(b) for b in batches] == [[b"high", b"normal"], [b"low"]]


def test_priorities_across_keys_then_oldest_first():
    acc = Accumulator(max_items=10, max_bytes=1000)
    acc.add(item(b"a-old", key=(b"a",), arrived=0.0), 0.0)
    acc.add(item(b"b-old", key=(b"b",), arrived=0.5), 0.5)
    acc.add(item(b"c-high", key=(b"c",), priority=HIGH, arrived=1.0), 1.0)
    batches, _ = acc.drain_ready(1.0, limit=1)
    assert bodies(batches[0]) == [b"c-high"]
    batches, _ = acc.drain_ready(1.0, limit=1)
    assert bodies(batches[0]) == [b"a-old"]


def test_keys_never_share_a_batch():
    acc = Accumulator(max_items=100, max_bytes=10_000)
    for n in range(30):
        acc.add(item(str(n).encode(), key=(str(n % 3).encode(),)), 0.0)
    batches, _ = acc.drain_ready(0.0, limit=10)
    assert len(batches) == 3
    for batch in batches:
        assert {it.key for it in batch.items} == {batch.key}
        assert batch.size == 10


def test_remove_before_sealing_takes_the_item_out():
    acc = Accumulator(max_items=10, max_bytes=1000)
    a, b, c = item(b"a"), item(b"bb"), item(b"c")
    for it in (a, b, c):
        acc.add(it, 0.0)
    assert acc.remove(b) and b.state == REMOVED
    assert acc.queued == 2 and acc.queues[()].bytes == 2
    batches, _ = acc.drain_ready(0.0, limit=1)
    assert bodies(batches[0]) == [b"a", b"c"]
    assert not acc.remove(a) and a.state == BATCHED  # sealed: no longer removable


def test_removing_the_last_item_drops_the_key_queue():
    acc = Accumulator(max_items=10, max_bytes=1000)
    it = item(key=(b"k",))
    acc.add(it, 0.0)
    acc.remove(it)
    assert acc.queues == {} and acc.queued == 0 and acc.next_deadline(True) is None


def test_expire_answers_only_callers_past_their_deadline():
    acc = Accumulator(max_items=10, max_bytes=1000, expected=lambda n: 0.010)
    shared = item(b"s", waiters=[1.0, 3.0])
    alone = item(b"a", waiters=[1.005])
    acc.add(shared, 0.0)
    acc.add(alone, 0.0)
    assert acc.next_deadline(False) == 1.0 - 0.010
    assert acc.expire(0.98) == []
    expired = acc.expire(0.996)
    assert sorted(w.deadline for w in expired) == [1.0, 1.005]
    assert shared.state == QUEUED and [w.deadline for w in shared.waiters] == [3.0] and shared.deadline == 3.0
    assert alone.state == REMOVED and acc.queued == 1
    assert acc.next_deadline(False) == 3.0 - 0.010


def test_deadline_flushes_early_when_the_hold_would_be_too_late():
    acc = Accumulator(max_items=10, max_bytes=1000, hold=1.0, margin=0.001, tail=lambda n: 0.020)
    acc.add(item(b"relaxed", arrived=0.0, waiters=[10.0]), 0.0)
    acc.add(item(b"urgent", arrived=0.0, waiters=[0.050]), 0.0)
    due = acc.next_deadline(True)
    assert abs(due - 0.029) < 1e-9
    assert acc.drain_ready(0.028, limit=1) == ([], [])
    batches, expired = acc.drain_ready(due, limit=1)
    assert not expired and batches[0].reason == "deadline" and bodies(batches[0]) == [b"relaxed", b"urgent"]


def test_urgent_items_left_behind_stay_tracked():
    acc = Accumulator(max_items=10, max_bytes=1000, hold=1.0, tail=lambda n: 0.0, margin=0.001)
    acc.add(item(b"u1", key=(b"a",), waiters=[0.5]), 0.0)
    acc.add(item(b"u2", key=(b"b",), waiters=[0.5]), 0.0)
    now = 0.4995
    batches, _ = acc.drain_ready(now, limit=1)
    # one slot: one goes, the other is still urgent at the next look
    assert len(batches) == 1 and batches[0].reason == "deadline"
    assert acc.next_deadline(True) <= now
    more, _ = acc.drain_ready(now, limit=1)
    assert len(more) == 1 and more[0].reason == "deadline" and more[0].key != batches[0].key


def test_items_that_cannot_make_it_are_never_sealed():
    acc = Accumulator(max_items=10, max_bytes=1000, expected=lambda n: 0.030)
    acc.add(item(b"late", waiters=[1.020]), 1.0)
    acc.add(item(b"fine", waiters=[2.0]), 1.0)
    batches, expired = acc.drain_ready(1.0, limit=1)
    assert bodies(batches[0]) == [b"fine"]
    assert [w.deadline for w in expired] == [1.020] and expired[0].item.state == REMOVED


def test_a_queue_of_only_late_items_gives_no_batch():
    acc = Accumulator(max_items=10, max_bytes=1000, expected=lambda n: 0.5)
    acc.add(item(waiters=[1.1]), 1.0)
    batches, expired = acc.drain_ready(1.0, limit=3)
    assert batches == [] and len(expired) == 1 and acc.queued == 0


def test_tighten_moves_the_deadline_earlier():
    acc = Accumulator(max_items=10, max_bytes=1000)
    it = item(waiters=[9.0])
    acc.add(it, 0.0)
    acc.tighten(it, 4.0)
    assert it.deadline == 4.0 and acc.next_deadline(False) == 4.0
    acc.tighten(it, 6.0)
    assert it.deadline == 4.0


def test_draining_flushes_everything_with_reason_drain():
    acc = Accumulator(max_items=2, max_bytes=1000, hold=60.0)
    for _ in range(3):
        acc.add(item(), 0.0)
    acc.draining = True
    batches, _ = acc.drain_ready(0.0, limit=5)
    assert [b.reason for b in batches] == ["drain", "drain"] and acc.queued == 0


def test_stale_deadline_entries_are_compacted():
    acc = Accumulator(max_items=1000, max_bytes=10**9)
    for round_ in range(20):
        for _ in range(200):
            acc.add(item(waiters=[100.0 + round_]), 0.0)
        acc.drain_ready(0.0, limit=1)
    assert acc.queued == 0
    assert len(acc._heap) <= 2 * acc.queued + 1024 + 1


def test_batch_ids_are_unique_and_injectable():
    ids = iter(["x", "y"])
    acc = Accumulator(max_items=1, max_bytes=100, new_id=lambda: next(ids))
    acc.add(item(), 0.0)
    acc.add(item(), 0.0)
    batches, _ = acc.drain_ready(0.0, limit=2)
    assert [b.id for b in batches] == ["x", "y"]
