"""Rendezvous hashing of shard keys: a fixed vector of expected shards (stable across processes and Python
versions), an even spread, and on adding a shard only the keys that move to it move (about 1/(N+1) of them)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshbatch.ingest.sinks import hashing
from meshbatch.ingest.sinks.hashing import Rendezvous, field_value, key_text, moves

KEYS = [f"device-{i}".encode() for i in range(24)]
# Pinned: a change here moves stored keys between shards; never regenerate it to make a test pass.
EXPECTED_3 = [0, 0, 1, 1, 2, 1, 0, 1, 2, 2, 2, 0, 0, 2, 0, 2, 1, 2, 1, 2, 0, 2, 2, 2]
EXPECTED_4 = [0, 0, 1, 1, 2, 1, 3, 1, 3, 2, 3, 3, 0, 3, 0, 2, 3, 2, 3, 2, 0, 2, 2, 2]


def test_a_fixed_vector_of_keys_lands_on_the_same_shards() -> None:
    assert [Rendezvous(["0", "1", "2"]).place(k) for k in KEYS] == EXPECTED_3
    assert [Rendezvous(["0", "1", "2", "3"]).place(k) for k in KEYS] == EXPECTED_4


def test_placement_does_not_depend_on_the_process_hash_seed() -> None:
    # the module alone (it imports only hashlib and orjson): a fresh interpreter per seed, quickly
    code = ("import importlib.util as u, sys; s = u.spec_from_file_location('h', sys.argv[1]); "
            "m = u.module_from_spec(s); s.loader.exec_module(m); r = m.Rendezvous(['0', '1', '2']); "
            "print([r.place(f'device-{i}'.encode()) for i in range(24)])")
    for seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code, hashing.__file__], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": seed}).stdout
        assert out.strip() == str(EXPECTED_3)


def test_keys_spread_evenly() -> None:
    ring = Rendezvous(["0", "1", "2"])
    n = 30_000
    counts = Counter(ring.place(b"user-%d" % i) for i in range(n))
    for shard in range(3):
        assert abs(counts[shard] / n - 1 / 3) < 0.02, counts
    chi2 = sum((counts[s] - n / 3) ** 2 / (n / 3) for s in range(3))
    assert chi2 < 13.8  # p = 0.001 for 2 degrees of freedom


def test_adding_a_shard_moves_only_keys_to_it_about_one_in_n_plus_one() -> None:
    keys = [b"k%d" % i for i in range(20_000)]
    moved = moves(["0", "1", "2"], ["0", "1", "2", "3"], keys)
    assert all(to == "3" for _, _, to in moved)  # nothing moves between the old shards
    assert 0.23 < len(moved) / len(keys) < 0.27  # 1/4 expected
    assert Counter(before for _, before, _ in moved).keys() == {"0", "1", "2"}


def test_removing_a_shard_moves_only_its_keys() -> None:
    keys = [b"k%d" % i for i in range(5_000)]
    ring = Rendezvous(["a", "b", "c"])
    moved = moves(["a", "b", "c"], ["a", "c"], keys)
    assert {before for _, before, _ in moved} == {"b"}
    assert len(moved) == sum(1 for k in keys if ring.place(k) == 1)


def test_shard_names_not_positions_decide() -> None:
    forward = Rendezvous(["x", "y", "z"])
    backward = Rendezvous(["z", "y", "x"])
    assert all(forward.names[forward.place(k)] == backward.names[backward.place(k)] for k in KEYS)


@given(st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=8, unique=True), st.binary(max_size=64))
def test_every_key_has_one_shard_in_range(names: list[str], key: bytes) -> None:
    ring = Rendezvous(names)
    assert 0 <= ring.place(key) < len(names)
    assert ring.place(key) == Rendezvous(list(names)).place(key)


@pytest.mark.parametrize(("value", "key"), [
    ("abc", b"abc"), ("é", "é".encode()), (42, b"42"), ("42", b"42"), (1.5, b"1.5"), (True, b"true"),
    (None, None), ({"a": 1}, None), ([1], None), ("", b""),
])
def test_key_text(value: object, key: bytes | None) -> None:
    assert key_text(value) == key


def test_field_paths() -> None:
    event = {"device": {"id": "d1"}, "n": 3}
    assert field_value(event, ("device", "id")) == "d1"
    assert field_value(event, ("n", "x")) is None
    assert field_value(event, ("missing",)) is None
    assert field_value([1, 2], ("a",)) is None


def test_bad_shard_lists() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Rendezvous([])
    with pytest.raises(ValueError, match="distinct"):
        Rendezvous(["a", "a"])
