"""The search for a canary's candidate on a fake clock: when a sweep is due, what its outcome leads to."""

import pytest

from meshbatch.batching.canary import BatchSetting, CanaryDecision
from meshbatch.batching.canary_search import (
    BACKOFF,
    NO_BETTER,
    SWEEPING,
    TRYING,
    WAITING,
    WAITING_FOR_DATA,
    CanarySearch,
    Holdings,
    SearchRules,
)
from meshbatch.clock import FakeClock

RULES = SearchRules(min_arrivals=100, min_batches=10, retry=60.0, backoff=5.0)
CANDIDATE = BatchSetting(64, 0.002, 0.005, 1)


def held(arrivals: int = 500, batches: int = 40, recorded: int = 40, capacity: int = 65_536) -> Holdings:
    return Holdings(recording=True, arrivals=arrivals, batches=batches, recorded=recorded, capacity=capacity)


def test_nothing_starts_while_the_recorder_is_off_too_small_or_short_of_data():
    clock, search = FakeClock(), CanarySearch(RULES)
    assert not search.due(clock.now(), Holdings(recording=False))
    assert search.state == WAITING_FOR_DATA and search.why.startswith("recorder_off")
    assert not search.due(clock.now(), held(capacity=50))
    assert search.why.startswith("recorder_too_small") and "50" in search.why
    assert not search.due(clock.now(), held(arrivals=99))
    assert search.why.startswith("99 of 100 arrivals, 40 of 10 batches")
    assert not search.due(clock.now(), held(batches=9, recorded=9))
    summary = search.summary(clock.now())
    assert summary["state"] == WAITING_FOR_DATA and summary["recorded"]["batches"] == 9
    assert summary["needs"] == {"arrivals": 100, "batches": 10} and search.sweeps == 0


def test_a_sweep_is_due_once_with_enough_data_and_none_while_it_runs():
    clock, search = FakeClock(), CanarySearch(RULES)
    assert search.due(clock.now(), held())
    assert search.state == SWEEPING and search.sweeps == 1
    clock.advance(100)
    assert not search.due(clock.now(), held(recorded=1000))  # one sweep at a time


def test_a_recommendation_is_tried_and_a_rolled_back_one_never_again():
    clock, search = FakeClock(), CanarySearch(RULES)
    assert search.due(clock.now(), held())
    assert search.on_result(clock.now(), CANDIDATE, "max_items 64") == CANDIDATE
    assert search.state == TRYING and not search.due(clock.now(), held(recorded=500))
    rollback = CanaryDecision(clock.now(), "rollback", "p99", "slower")
    search.on_final(clock.now(), rollback, CANDIDATE)
    assert search.state == WAITING and search.summary(clock.now())["next_sweep_in_s"] == 60
    clock.advance(59)
    assert not search.due(clock.now(), held(recorded=500))
    clock.advance(1)
    assert search.due(clock.now(), held(recorded=500))
    decision = search.on_result(clock.now(), CANDIDATE, "max_items 64")  # the same again: not tried
    assert isinstance(decision, CanaryDecision)
    assert (decision.action, decision.reason) == ("keep", NO_BETTER) and "rolled back before" in decision.detail


def test_no_better_setting_is_a_keep_and_the_next_sweep_waits_for_retry_and_fresh_batches():
    clock, search = FakeClock(), CanarySearch(RULES)
    assert search.due(clock.now(), held(recorded=40))
    decision = search.on_result(clock.now(), None, "the route's own setting is the best")
    assert isinstance(decision, CanaryDecision) and (decision.action, decision.reason) == ("keep", NO_BETTER)
    assert search.state == WAITING
    clock.advance(60)
    assert not search.due(clock.now(), held(recorded=45))  # an idle route is not swept again on the same record
    assert search.state == WAITING_FOR_DATA and "5 since the last sweep" in search.why
    assert search.due(clock.now(), held(recorded=50))


def test_failed_sweeps_back_off_doubling_up_to_retry():
    clock, search = FakeClock(), CanarySearch(RULES)
    delays = []
    for _ in range(6):
        clock.advance(1000)
        assert search.due(clock.now(), held(recorded=search.swept_recorded + 10))
        delays.append(search.on_failure(clock.now(), "killed after 30 s"))
        assert search.state == BACKOFF and not search.due(clock.now(), held(recorded=10_000))
    assert delays == [5, 10, 20, 40, 60, 60]
    assert search.summary(clock.now())["failed_sweeps"] == 6
    assert search.on_result(clock.now(), CANDIDATE, "found") == CANDIDATE and search.failures == 0


def test_an_abandoned_sweep_leaves_the_search_waiting_for_data():
    clock, search = FakeClock(), CanarySearch(RULES)
    assert search.due(clock.now(), held())
    search.on_cancelled(clock.now())
    assert search.state == WAITING_FOR_DATA and search.sweeps == 1


@pytest.mark.parametrize("rules", [dict(min_arrivals=1), dict(min_batches=0), dict(retry=0), dict(backoff=-1)])
def test_rules_out_of_range(rules):
    with pytest.raises(ValueError):
        SearchRules(**rules)
