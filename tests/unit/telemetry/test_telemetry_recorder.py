"""The batch recorder keeps recent batches within its item bound."""

from __future__ import annotations

import pytest

from meshbatch.batching.batch import Batch, Item
from meshbatch.telemetry.recorder import BatchRecorder


def _batch(n: int, sent: float) -> Batch:
    batch = Batch(f"b{sent}", (), sent)
    batch.fill([Item(b"1", b"POST", b"/", [], key=(), priority=1, arrived=sent - 0.001 * i, deadline=9e9)
                for i in range(n)])
    batch.seal("wait", sent)
    batch.send(sent)
    return batch


def test_the_oldest_batches_go_beyond_the_bound() -> None:
    recorder = BatchRecorder(max_items=10)
    for second in range(5):
        recorder.add(_batch(4, float(second)), second + 0.5, ok=True)
    assert recorder.items == 8 and recorder.recorded == 5
    exported = recorder.export()
    assert [b["sent"] for b in exported] == [3.0, 4.0]
    assert exported[0]["done"] == 3.5 and exported[0]["ok"] is True and exported[0]["flush"] == "wait"
    assert exported[0]["arrivals"] == pytest.approx([3.0, 2.999, 2.998, 2.997])


def test_one_batch_larger_than_the_bound_is_still_kept() -> None:
    recorder = BatchRecorder(max_items=2)
    recorder.add(_batch(5, 1.0), 1.1, ok=False)
    assert len(recorder.batches) == 1 and recorder.export()[0]["ok"] is False
    with pytest.raises(ValueError):
        BatchRecorder(0)
