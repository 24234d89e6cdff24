"""Event ids: generated ids are unguessable and sortable by time; keyed ids are the caller's own (scope digest +
key); no key of any scope ever makes a generated id or another scope's id."""

from __future__ import annotations

import os
import re
import string

from hypothesis import example, given, settings
from hypothesis import strategies as st

from meshbatch.ingest.record import EventIds, RandomPool, key_of, keyed_id, scope_digest

GENERATED = re.compile(r"e\.[0-9a-f]{11}-[0-9a-f]{32}")
KEYED = re.compile(r"k\.[0-9a-f]{32}\.[A-Za-z0-9_.~%-]+(:(dead)?[0-9]+)?")
keys = st.text(st.sampled_from(string.printable[:95]), min_size=1, max_size=200)  # what valid_key lets through
scopes = st.binary(max_size=80)
parts = st.sampled_from(["", "0", "1", "12", "dead3"])


def test_generated_ids_have_fresh_randomness_each_and_sort_by_time():
    ids = EventIds()
    batch = ids.many(1000, now=1_700_000_000.0)
    assert all(GENERATED.fullmatch(i) for i in batch)
    assert len(set(batch)) == 1000
    assert len({i.partition("-")[2][:8] for i in batch}) > 990  # no shared per-process prefix to learn
    assert {i[:13] for i in batch} == {f"e.{1_700_000_000_000:011x}"}
    assert ids(now=1_700_000_000.0) < ids(now=1_700_000_000.002)  # later ms sorts later
    assert GENERATED.fullmatch(ids()) and ids.many(0) == []


def test_keyed_ids_are_stable_per_scope_and_apart_across_scopes():
    alice, bob = scope_digest(b"jwt:9:iss/alice;"), scope_digest(b"jwt:7:iss/bob;")
    assert keyed_id(alice, "order-42") == keyed_id(scope_digest(b"jwt:9:iss/alice;"), "order-42")
    assert keyed_id(alice, "order-42") != keyed_id(bob, "order-42")
    assert keyed_id(alice, "order-42") == f"k.{alice}.order-42"
    assert keyed_id(alice, "a,b c#d:e") == f"k.{alice}.a%2Cb%20c%23d%3Ae"
    assert keyed_id(alice, "batch", "1") == f"k.{alice}.batch:1"
    assert key_of(keyed_id(alice, "a,b c#d:e", "dead2")) == "a,b c#d:e"
    assert key_of(EventIds()()) is None and key_of("order-42") is None and key_of("k.short.x") is None


@settings(max_examples=500, deadline=None)
@given(scope=scopes, key=keys, part=parts)
def test_no_key_of_any_scope_makes_a_generated_id(scope, key, part):
    event_id = keyed_id(scope_digest(scope), key, part)
    assert not GENERATED.fullmatch(event_id) and not event_id.startswith("e.")
    assert KEYED.fullmatch(event_id)
    assert not any(c in event_id for c in ",# \t")  # safe in the cluster sink's comma list, JetStream's replay ids
    assert key_of(event_id) == key


@settings(max_examples=500, deadline=None)
@given(a=st.tuples(scopes, keys, parts), b=st.tuples(scopes, keys, parts))
@example(a=(b"", "batch:1", ""), b=(b"", "batch", "1"))  # a key that spells another event's part
def test_keyed_ids_are_one_to_one(a, b):
    def event_id(t):
        return keyed_id(scope_digest(t[0]), t[1], t[2])

    assert (event_id(a) == event_id(b)) == (a == b)


@settings(max_examples=200, deadline=None)
@given(scope=scopes, key=keys)
def test_a_key_spelling_another_id_stays_a_key_of_its_own_scope(scope, key):
    victim = keyed_id(scope_digest(b"spiffe:33:spiffe://example.org/ns/a/sa/b;"), key)
    predicted = EventIds()()
    for forged in (victim, predicted):  # the attacker sends another caller's id, or a predicted one, as its key
        made = keyed_id(scope_digest(scope), forged)
        assert made not in (victim, predicted) and key_of(made) == forged


def test_the_random_pool_never_hands_out_a_byte_twice_nor_to_a_forked_child() -> None:
    pool = RandomPool()
    taken = [pool.take(16) for _ in range(RandomPool.SIZE // 16 * 3)]  # three refills
    assert len(set(taken)) == len(taken) and all(len(t) == 16 for t in taken)
    assert len(pool.take(RandomPool.SIZE * 2)) == RandomPool.SIZE * 2  # more than a pool at once
    pool.take(16)
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child's next bytes are its own, not the parent's next ones
        os.write(write, pool.take(16))
        os._exit(0)
    os.waitpid(child, 0)
    assert os.read(read, 16) != pool.take(16)
    os.close(read)
    os.close(write)


def test_the_random_pools_digits_are_its_bytes_each_handed_out_once() -> None:
    """Bytes and digits come from one pool: the digits are the bytes' hexadecimal, and no byte goes out twice,
    as a byte or as digits, across refills."""
    pool = RandomPool()
    pool.drop()
    given: list[bytes] = []
    for i in range(RandomPool.SIZE // 16 * 3):
        if i % 3:
            digits = pool.digits(16)
            assert len(digits) == 32 and digits == digits.lower()
            given.append(bytes.fromhex(digits))
        else:
            given.append(pool.take(16))
    assert len(set(given)) == len(given)
    first = pool.take(8)
    pool.drop()
    assert len(pool.digits(RandomPool.SIZE + 5)) == 2 * (RandomPool.SIZE + 5)  # more than a pool at once
    assert bytes.fromhex(pool.digits(8)) != first
