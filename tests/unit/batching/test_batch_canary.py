"""The canary core on a fake clock: arm shares, windows, promote, rollback, never on too few samples."""

import math

import pytest

from meshbatch.batching.canary import CANDIDATE, CURRENT, BatchSetting, Canary, CanaryRules
from meshbatch.clock import FakeClock

CURRENT_SETTING = BatchSetting(32, 0.001, 0.005, 4)
CANDIDATE_SETTING = CURRENT_SETTING.merged(max_items=128, hold=0.002)


def canary(clock: FakeClock, **rules: object) -> Canary:
    return Canary(CURRENT_SETTING, CANDIDATE_SETTING, CanaryRules(**{"share": 0.1, **rules}), clock.now())


def feed(c: Canary, clock: FakeClock, arm: int, n: int, *, latency: float, cost: float, items: int = 10,
         errors: int = 0, failed: bool = False):
    """n batches of `arm`, each answered `latency` after its callers came, costing `cost` seconds per item."""
    for _ in range(n):
        decision = c.on_done(arm, clock.now(), [latency] * items, items, cost * items, errors, failed)
        if decision is not None and decision.action != "keep":
            return decision
    return None


def window(c: Canary, clock: FakeClock, *, cur=(0.010, 0.001), cand=(0.010, 0.001), batches=(30, 30)):
    """One window's worth of batches for both arms, then the window's end."""
    assert feed(c, clock, CURRENT, batches[0], latency=cur[0], cost=cur[1]) is None
    decision = feed(c, clock, CANDIDATE, batches[1], latency=cand[0], cost=cand[1])
    if decision is not None:
        return decision
    clock.advance(c.rules.window)
    return c.tick(clock.now())


def test_the_candidate_gets_its_share_of_the_batches():
    clock = FakeClock()
    for share in (0.1, 0.25, 0.5):
        c = canary(clock, share=share)
        arms = []
        for _ in range(1000):
            arm = c.arm
            assert c.setting == (CANDIDATE_SETTING if arm == CANDIDATE else CURRENT_SETTING)
            assert c.on_sealed() == arm
            arms.append(arm)
        assert abs(arms.count(CANDIDATE) / 1000 - share) < 0.002
        # interleaved, not in runs: no stretch of 2/share batches goes without a candidate batch
        gap = math.ceil(2 / share)
        assert all(CANDIDATE in arms[i:i + gap] for i in range(0, 1000 - gap))


def test_several_batches_sealed_at_once_count_to_one_arm():
    clock = FakeClock()
    c = canary(clock, share=0.5)
    assert c.on_sealed(3) == CURRENT
    assert c.sealed == [3, 0] and c.arm == CANDIDATE
    assert c.on_sealed(1) == CANDIDATE and c.arm == CANDIDATE  # still behind its share


def test_a_better_candidate_is_promoted_after_two_passing_windows():
    clock = FakeClock()
    c = canary(clock)
    keep = window(c, clock, cur=(0.010, 0.001), cand=(0.009, 0.0005))
    assert (keep.action, keep.reason) == ("keep", "passed") and "1 in a row of 2" in keep.detail
    assert c.passed == 1 and c.running
    decision = window(c, clock, cur=(0.010, 0.001), cand=(0.009, 0.0005))
    assert decision is not None and (decision.action, decision.reason) == ("promote", "passed")
    assert c.state == "promoted" and c.setting == CANDIDATE_SETTING
    assert decision.figures["candidate"]["cost_ms_per_item"] == 0.5
    assert decision.figures["current"]["p99_ms"] == 10.0
    assert c.on_sealed() == CURRENT and c.setting == CANDIDATE_SETTING  # over: every batch runs the candidate
    assert c.on_done(CURRENT, clock.now(), [1.0], 1, 1.0, 1, True) is None


def test_a_slower_candidate_is_rolled_back_for_its_p99():
    clock = FakeClock()
    c = canary(clock)
    keep = window(c, clock, cur=(0.010, 0.001), cand=(0.020, 0.0005))
    assert (keep.action, keep.reason) == ("keep", "p99") and "1 of 2 to roll back" in keep.detail
    assert c.failed == 1
    decision = window(c, clock, cur=(0.010, 0.001), cand=(0.020, 0.0005))
    assert decision is not None and (decision.action, decision.reason) == ("rollback", "p99")
    assert "20.000 ms > 12.000 ms" in decision.detail
    assert c.state == "rolled_back" and c.setting == CURRENT_SETTING


def test_the_p99_bound_has_a_percentage_and_a_slack():
    clock = FakeClock()
    c = canary(clock, passes=1)
    # 10 ms x 1.1 + 1 ms = 12 ms: 11.9 ms passes
    decision = window(c, clock, cur=(0.010, 0.001), cand=(0.0119, 0.001))
    assert decision is not None and decision.action == "promote"


def test_a_costlier_candidate_is_rolled_back_for_its_cost():
    clock = FakeClock()
    c = canary(clock, failures=1, min_cost_decrease=0.1)
    decision = window(c, clock, cur=(0.010, 0.001), cand=(0.010, 0.00095))  # 5% cheaper, 10% asked
    assert decision is not None and (decision.action, decision.reason) == ("rollback", "cost")


def test_never_judged_on_too_few_batches_and_inconclusive_in_the_end():
    clock = FakeClock()
    c = canary(clock, min_batches=20, max_windows=3)
    for _ in range(2):
        keep = window(c, clock, cur=(0.010, 0.001), cand=(0.001, 0.0001), batches=(50, 19))
        assert (keep.action, keep.reason) == ("keep", "too_few") and "candidate 19" in keep.detail
        assert c.passed == 0 and c.failed == 0 and c.running
    decision = window(c, clock, cur=(0.010, 0.001), cand=(0.001, 0.0001), batches=(50, 19))
    assert decision is not None and (decision.action, decision.reason) == ("rollback", "inconclusive")
    assert "after 3 windows" in decision.detail


def test_a_window_ends_only_when_its_time_is_up():
    clock = FakeClock()
    c = canary(clock, passes=1)
    feed(c, clock, CURRENT, 30, latency=0.01, cost=0.001)
    feed(c, clock, CANDIDATE, 30, latency=0.01, cost=0.001)
    clock.advance(c.rules.window - 0.001)
    assert c.tick(clock.now()) is None and c.windows == 0
    clock.advance(0.001)
    assert c.tick(clock.now()).action == "promote"


def test_the_first_window_starts_with_the_first_batch():
    clock = FakeClock()
    c = canary(clock, passes=1)
    clock.advance(3600)  # an idle hour between the config and the traffic
    assert feed(c, clock, CURRENT, 30, latency=0.01, cost=0.001) is None
    assert c.windows == 0 and c.window_start == clock.now()


def test_a_candidate_that_always_fails_is_rolled_back_at_once():
    clock = FakeClock()
    c = canary(clock)
    feed(c, clock, CURRENT, 5, latency=0.01, cost=0.001)
    assert feed(c, clock, CANDIDATE, 2, latency=0.01, cost=0.001, errors=10, failed=True) is None
    decision = feed(c, clock, CANDIDATE, 1, latency=0.01, cost=0.001, errors=10, failed=True)
    assert decision is not None and (decision.action, decision.reason) == ("rollback", "errors")
    assert decision.figures["candidate"]["failed_batches"] == 3
    assert c.state == "rolled_back" and c.setting == CURRENT_SETTING
    assert c.windows == 0  # before its window ended


def test_errors_as_frequent_as_the_current_arms_do_not_roll_back():
    clock = FakeClock()
    c = canary(clock)
    feed(c, clock, CURRENT, 10, latency=0.01, cost=0.001, errors=10, failed=True)
    assert feed(c, clock, CANDIDATE, 5, latency=0.01, cost=0.001, errors=10, failed=True) is None
    assert c.running


def test_rules_refuse_bad_shares():
    for share in (0.0, -0.1, 0.6, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            CanaryRules(share=share)
    with pytest.raises(ValueError):
        CanaryRules(share=0.1, window=0)


def test_summary_shows_both_arms_and_the_window():
    clock = FakeClock()
    c = canary(clock)
    feed(c, clock, CURRENT, 3, latency=0.004, cost=0.001)
    clock.advance(1.5)
    summary = c.summary(clock.now())
    assert summary["state"] == "running" and summary["share"] == 0.1
    assert summary["candidate"] == {"max_items": 128, "min_wait_ms": 2.0, "max_wait_ms": 5.0, "max_in_flight": 4}
    window_view = summary["window"]
    assert window_view["elapsed_ms"] == 1500.0 and window_view["current"]["batches"] == 3
    assert window_view["current"]["p99_ms"] == 4.0 and window_view["candidate"]["batches"] == 0


def test_errors_spread_over_windows_too_short_to_judge_are_not_forgotten():
    clock = FakeClock()
    c = canary(clock, min_batches=20)
    for _ in range(3):  # each window: a few batches, one failed candidate batch, not judged
        feed(c, clock, CURRENT, 4, latency=0.01, cost=0.001)
        decision = feed(c, clock, CANDIDATE, 1, latency=0.01, cost=0.001, errors=10, failed=True)
        if decision is None:
            clock.advance(c.rules.window)
            assert c.tick(clock.now()).action == "keep"
    assert decision is not None and (decision.action, decision.reason) == ("rollback", "errors")
    assert decision.figures["candidate"]["failed_batches"] == 3 and "since the start" in decision.detail


def test_a_window_keeps_a_bounded_uniform_sample_of_latencies():
    from meshbatch.batching.canary import MAX_SAMPLES, ArmWindow

    arm = ArmWindow()
    values = [i / 100_000 for i in range(100_000)]  # 0 .. 1 s, the slow ones last
    for start in range(0, len(values), 100):
        arm.add(values[start:start + 100], 100, 0.1, 0, False)
    assert len(arm.latencies) == MAX_SAMPLES and arm.callers == 100_000
    assert abs(arm.p99 - 0.99) < 0.01  # the window's start counts as much as its end
    assert arm.figures()["callers"] == 100_000
