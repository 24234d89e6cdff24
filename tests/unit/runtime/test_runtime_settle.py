"""The collector tuned once a proxy serves: the youngest generation's threshold, its override from the
environment (anything but a positive integer reported, the default kept), and `settle` setting it in a process
of its own (it also freezes the heap, which this test process must not)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from meshbatch.runtime.settle import ENV, YOUNG_THRESHOLD, young_threshold


def test_the_default_and_a_positive_override() -> None:
    assert young_threshold({}) == YOUNG_THRESHOLD == 20_000
    assert young_threshold({ENV: "5000"}) == 5000
    assert young_threshold({ENV: " 700 "}) == 700


@pytest.mark.parametrize("given", ["0", "-3", "lots", "", "1e9", "9" * 100 + "x"])
def test_anything_else_is_reported_and_the_default_kept(given: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="meshbatch"):
        assert young_threshold({ENV: given}) == YOUNG_THRESHOLD
    assert f"{ENV}=" in caplog.text and "not a positive integer" in caplog.text
    assert len(caplog.text) < 300  # (a long value is cut in the message)


@pytest.mark.parametrize(("given", "expected"), [(None, YOUNG_THRESHOLD), ("3000", 3000), ("nope", YOUNG_THRESHOLD)])
def test_settle_sets_the_threshold_and_keeps_the_older_generations(given: str | None, expected: int) -> None:
    env = {k: v for k, v in os.environ.items() if k != ENV}
    if given is not None:
        env[ENV] = given
    code = ("import gc; gc.set_threshold(700, 11, 12); from meshbatch.runtime.settle import settle; settle(); "
            "print(gc.get_threshold(), gc.get_freeze_count() > 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0] == f"({expected}, 11, 12) True"
