import pytest

from meshbatch.batching.admission import Controls, query_value
from meshbatch.batching.batch import HIGH, LOW, NORMAL
from meshbatch.errors import BadRequest
from meshbatch.http.message import Request


def req(headers=(), target=b"/orders"):
    return Request(b"POST", target, list(headers), b"{}")


def test_defaults():
    assert Controls([]).read(req()) == ((), NORMAL, None, None)


@pytest.mark.parametrize(("value", "level"), [(b"high", HIGH), (b"low", LOW), (b"normal", NORMAL),
                                              (b" HIGH ", HIGH), (b"Low", LOW)])
def test_priorities(value, level):
    assert Controls([]).read(req([(b"x-meshbatch-priority", value)]))[1] == level


@pytest.mark.parametrize("value", [b"urgent", b"", b"1"])
def test_bad_priority_is_a_400(value):
    with pytest.raises(BadRequest) as info:
        Controls([]).read(req([(b"x-meshbatch-priority", value)]))
    assert info.value.reason == "bad_priority" and info.value.status == 400


@pytest.mark.parametrize(("value", "seconds"), [(b"250", 0.25), (b"1.5", 0.0015), (b"0", 0.0), (b"-3", -0.003)])
def test_deadline_budget(value, seconds):
    assert Controls([]).read(req([(b"x-meshbatch-deadline-ms", value)]))[2] == pytest.approx(seconds)


@pytest.mark.parametrize("value", [b"soon", b"nan", b"inf", b"", b"12ms"])
def test_bad_deadline_is_a_400(value):
    with pytest.raises(BadRequest) as info:
        Controls([]).read(req([(b"x-meshbatch-deadline-ms", value)]))
    assert info.value.reason == "bad_deadline"


def test_key_from_headers_and_query_first_occurrence_wins():
    controls = Controls(["header:X-Tenant", "query:model", "header:x-shape"])
    key, *_ = controls.read(req([(b"x-tenant", b"acme"), (b"x-tenant", b"evil"), (b"x-meshbatch-priority", b"low"),
                                 (b"x-meshbatch-priority", b"bogus")], target=b"/o?x=1&model=big%20one&model=2"))
    assert key == (b"acme", b"big one", b"")
    assert controls.key_headers == [(0, b"x-tenant"), (2, b"x-shape")]
    assert controls.key_queries == [(1, b"model")]


def test_idempotency_key():
    assert Controls([]).read(req([(b"idempotency-key", b"k1")]))[3] == b"k1"
    assert Controls([]).read(req([(b"idempotency-key", b"")]))[3] is None


def test_query_value_decoding():
    assert query_value(b"a=1&b=x+y&c", b"b") == b"x y"
    assert query_value(b"a%20b=%41", b"a b") == b"A"
    assert query_value(b"a=1", b"z") == b""


def test_bad_key_spec():
    with pytest.raises(ValueError):
        Controls(["cookie:x"])
