"""The frame watch on a fake clock: each HTTP/2 attack is named once its limit is crossed, never before, and the
windowed limits start over with each window."""

from __future__ import annotations

import struct

from meshbatch.clock import FakeClock
from meshbatch.http2.limits import PREFACE, FrameWatch, H2Limits


def frame(kind: int, flags: int = 0, stream_id: int = 1, length: int = 0) -> bytes:
    return struct.pack(">I", length)[1:] + bytes([kind, flags]) + struct.pack(">I", stream_id) + b"\0" * length


def test_the_preface_is_passed_and_ordinary_frames_are_fine() -> None:
    clock = FakeClock()
    watch = FrameWatch(H2Limits(), clock.now())
    data = PREFACE + frame(4) + frame(1, 0x4 | 0x1, 1, 30) + frame(0, 1, 3, 100) + frame(8, 0, 0, 4)
    assert watch.feed(data, clock.now()) is None
    assert not watch.header_block_open


def test_frames_split_anywhere_are_read_the_same() -> None:
    clock = FakeClock()
    data = PREFACE + b"".join(frame(3, 0, 2 * i + 1, 4) for i in range(6))
    watch = FrameWatch(H2Limits(max_resets=5), clock.now())
    reasons = [watch.feed(data[i:i + 1], clock.now()) for i in range(len(data))]
    assert [r for r in reasons if r] == ["h2_rapid_reset"]
    assert reasons.index("h2_rapid_reset") == len(data) - 1 - 4  # at the sixth frame's header, not its payload


def test_rapid_reset_within_a_window_and_not_across_windows() -> None:
    clock = FakeClock()
    watch = FrameWatch(H2Limits(max_resets=3, window=10.0), clock.now(), preface=False)
    for i in range(3):
        assert watch.feed(frame(3, 0, 2 * i + 1, 4), clock.now()) is None
    clock.advance(10.0)
    for i in range(3):
        assert watch.feed(frame(3, 0, 2 * i + 9, 4), clock.now()) is None
    assert watch.feed(frame(3, 0, 31, 4), clock.now()) == "h2_rapid_reset"


def test_continuation_flood_by_bytes_and_by_frames() -> None:
    clock = FakeClock()
    limits = H2Limits(max_header_list_size=1000)
    watch = FrameWatch(limits, clock.now(), preface=False)
    assert watch.feed(frame(1, 0, 1, 1000), clock.now()) is None and watch.header_block_open
    assert watch.feed(frame(9, 0, 1, 500), clock.now()) is None
    assert watch.feed(frame(9, 0, 1, 1100), clock.now()) == "h2_continuation_flood"  # 2600 > 1.5 x 1000 + 1024
    empty = FrameWatch(limits, clock.now(), preface=False)
    assert empty.feed(frame(1, 0, 1, 10), clock.now()) is None
    reasons = [empty.feed(frame(9, 0, 1, 0), clock.now()) for _ in range(33)]
    assert reasons[-1] == "h2_continuation_flood" and reasons[:-1] == [None] * 32


def test_settings_and_ping_floods_count_requests_not_acknowledgements() -> None:
    clock = FakeClock()
    watch = FrameWatch(H2Limits(max_settings=2, max_pings=2), clock.now(), preface=False)
    acks = frame(4, 1, 0) * 10 + frame(6, 1, 0, 8) * 10
    assert watch.feed(acks, clock.now()) is None
    assert watch.feed(frame(4, 0, 0) * 2, clock.now()) is None
    assert watch.feed(frame(4, 0, 0), clock.now()) == "h2_settings_flood"
    pings = FrameWatch(H2Limits(max_pings=2), clock.now(), preface=False)
    assert pings.feed(frame(6, 0, 0, 8) * 2, clock.now()) is None
    assert pings.feed(frame(6, 0, 0, 8), clock.now()) == "h2_ping_flood"


def test_empty_data_frames_in_a_row() -> None:
    clock = FakeClock()
    watch = FrameWatch(H2Limits(max_empty_frames=3), clock.now(), preface=False)
    assert watch.feed(frame(0) * 3 + frame(0, 0, 1, 10) + frame(0) * 3, clock.now()) is None  # reset by data
    assert watch.feed(frame(0, 1), clock.now()) is None  # END_STREAM is not empty talk
    assert watch.feed(frame(0) * 3, clock.now()) is None
    assert watch.feed(frame(0), clock.now()) == "h2_empty_data_flood"


def test_streams_per_connection() -> None:
    clock = FakeClock()
    watch = FrameWatch(H2Limits(max_streams_per_connection=2), clock.now())
    assert watch.opened(clock.now()) is None and watch.opened(clock.now()) is None
    assert watch.opened(clock.now()) == "h2_too_many_streams"
    unlimited = FrameWatch(H2Limits(), clock.now())
    assert all(unlimited.opened(clock.now()) is None for _ in range(10_000))
