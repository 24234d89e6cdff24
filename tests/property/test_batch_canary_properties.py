"""Invariants of the canary core under random arms, figures, failures and clock moves (a fake clock):

- the candidate's share of the batches sealed stays within one batch of `share`;
- a promotion rests on windows in which each arm had at least `min_batches` batches, and never on a window in
  which the candidate's error rate exceeded the current's by more than the allowance;
- a decision is final: afterwards every batch runs the setting it chose and nothing changes it;
- a candidate with `min_failed_batches` failed batches and more errors than the current arm never gets promoted.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from meshbatch.batching.canary import CANDIDATE, CURRENT, BatchSetting, Canary, CanaryRules
from meshbatch.clock import FakeClock

CURRENT_SETTING = BatchSetting(16, 0.0, 0.005, 2)
CANDIDATE_SETTING = CURRENT_SETTING.merged(max_items=64)

batch = st.tuples(
    st.floats(0.0, 0.5),  # seconds to advance before it ends
    st.integers(1, 40),  # items
    st.floats(0.0001, 0.2),  # caller latency
    st.floats(0.00001, 0.01),  # upstream seconds per item
    st.booleans(),  # failed as a whole
)


@settings(max_examples=150, deadline=None)
@given(share=st.sampled_from([0.05, 0.1, 0.25, 0.5]), min_batches=st.integers(5, 15), passes=st.integers(1, 3),
       batches=st.lists(batch, min_size=1, max_size=300), candidate_fails=st.floats(0.0, 1.0),
       current_fails=st.floats(0.0, 0.3))
def test_canary_invariants(share: float, min_batches: int, passes: int, batches: list, candidate_fails: float,
                           current_fails: float) -> None:
    clock = FakeClock()
    rules = CanaryRules(share=share, window=1.0, min_batches=min_batches, passes=passes, max_windows=50)
    canary = Canary(CURRENT_SETTING, CANDIDATE_SETTING, rules, clock.now())
    decided = None
    for index, (advance, items, latency, cost, failed) in enumerate(batches):
        clock.advance(advance)
        arm = canary.on_sealed()
        total = sum(canary.sealed)
        if canary.running:
            assert abs(canary.sealed[CANDIDATE] - share * total) <= 1 + 1e-9
        # a failing batch, weighted per arm by the drawn rates
        fails = failed and ((index * 0.618) % 1.0) < (candidate_fails if arm == CANDIDATE else current_fails)
        decision = canary.on_done(arm, clock.now(), [latency] * items, items, cost * items, items if fails else 0,
                                  fails)
        if decided is not None:
            assert decision is None and canary.decision is decided
            assert canary.setting == (CANDIDATE_SETTING if decided.action == "promote" else CURRENT_SETTING)
            continue
        if decision is None:
            continue
        if decision.action == "keep":
            assert canary.running and decision.at == clock.now()
            continue
        decided = decision
        if decision.action == "promote":
            figures = decision.figures
            assert figures["current"]["batches"] >= min_batches and figures["candidate"]["batches"] >= min_batches
            assert figures["candidate"]["error_rate"] <= figures["current"]["error_rate"] + rules.max_error_increase
            assert canary.state == "promoted" and canary.setting == CANDIDATE_SETTING
        else:
            assert canary.state == "rolled_back" and canary.setting == CURRENT_SETTING
    totals = canary.totals
    if decided is not None and decided.action == "promote":  # the error rule never held when it was promoted
        assert not (totals[CANDIDATE].failed >= rules.min_failed_batches
                    and totals[CANDIDATE].error_rate > totals[CURRENT].error_rate + rules.max_error_increase)
