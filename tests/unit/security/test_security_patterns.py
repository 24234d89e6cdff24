"""Wildcard patterns of policies: the semantics of `*` (any run of characters, `/` included) checked against a
reference matcher, and a cost linear in the length of the value whatever the number of stars."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from meshbatch.security.patterns import Glob


def reference(patterns: list[str], value: str) -> bool:
    """`fnmatch` with `*` as its only special character: a backtracking regex, slow but plainly right."""
    return any(re.fullmatch(".*".join(re.escape(part) for part in p.split("*")), value, re.DOTALL) is not None
               for p in patterns)


@settings(max_examples=1000, deadline=None, derandomize=True)
@given(st.lists(st.text("ab/*", max_size=8), min_size=1, max_size=3), st.text("ab/", max_size=12))
def test_glob_agrees_with_the_reference_semantics(patterns: list[str], value: str) -> None:
    assert Glob(patterns).match(value) is reference(patterns, value)


def test_overlapping_parts_and_repeated_stars() -> None:
    assert Glob(["a*a"]).match("aa") and not Glob(["a*a"]).match("a")  # prefix and suffix may not overlap
    assert Glob(["*ab*ab*"]).match("xabyab") and not Glob(["*ab*ab*"]).match("xaba")
    assert Glob(["**"]).match("") and Glob(["a**b"]).match("ab")
    assert Glob(["/api/*"]).match("/api/") and not Glob(["/api/*"]).match("/api")


def _fastest(call: Callable[[], object], repeat: int = 15) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def test_a_64k_path_against_many_stars_costs_a_few_linear_scans() -> None:
    patterns = ["/api/*/v*/*.json", "*a*b*c*d*e*f*g*", "/*x*y*z", "*/secret/*/key*"]
    value = "/api/" + "a/" * 32_768 + ".json"  # passes every prefix and suffix test: the middle parts are searched
    glob = Glob(patterns)
    assert not glob.match(value)
    scan = _fastest(lambda: value.find("/v"))  # one pass of the C string search over the whole value
    # A few passes per pattern; a backtracking matcher is hundreds of thousands of passes here (seconds).
    assert _fastest(lambda: glob.match(value), repeat=3) < 200 * scan + 0.005
