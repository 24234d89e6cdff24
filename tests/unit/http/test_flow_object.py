"""The one flow-control object of a connection (either side), against a fake transport: reading paused and
resumed once per change, for good after an error; the pipelining water marks; the bytes written and watched."""

from __future__ import annotations

from meshbatch.clock import FakeClock
from meshbatch.http.flow import CHECKS_PER_TIMEOUT, Flow
from meshbatch.http.message import Request


class Transport:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.buffered = 0

    def pause_reading(self) -> None:
        self.calls.append("pause")

    def resume_reading(self) -> None:
        self.calls.append("resume")

    def get_write_buffer_size(self) -> int:
        return self.buffered


def waiting(count: int, size: int = 0) -> list[Request]:
    return [Request(b"POST", b"/", [], b"x" * size) for _ in range(count)]


def test_reading_is_paused_and_resumed_once_per_change() -> None:
    transport = Transport()
    flow = Flow(transport)
    flow.pause_reading()
    flow.pause_reading()
    assert flow.reading_paused
    flow.resume_reading()
    flow.resume_reading()
    assert transport.calls == ["pause", "resume"] and not flow.reading_paused


def test_without_a_transport_nothing_is_paused() -> None:
    flow = Flow()
    flow.pause_reading()
    assert not flow.reading_paused and flow.wrote(10) == 0 and flow.written == 10


def test_reading_stopped_for_good_never_resumes() -> None:
    transport = Transport()
    flow = Flow(transport)
    flow.stop_reading()
    flow.resume_reading()
    flow.queue_shrank([], 0, 32, 1000)
    assert transport.calls == ["pause"] and flow.reading_paused


def test_waiting_requests_pause_reading_at_the_high_marks_and_resume_at_the_low_ones() -> None:
    transport = Transport()
    flow = Flow(transport)
    flow.queue_grew(waiting(3), 3, 4, 1000)
    assert not flow.reading_paused
    flow.queue_grew(waiting(4), 4, 4, 1000)  # as many requests as allowed
    assert flow.reading_paused
    flow.queue_shrank(waiting(3), 3, 4, 1000)
    assert flow.reading_paused  # above half
    flow.queue_shrank(waiting(2), 2, 4, 1000)
    assert not flow.reading_paused
    flow.queue_grew(waiting(1, 600), 1, 4, 1000)
    flow.queue_grew(waiting(2, 600), 2, 4, 1000)  # too many body bytes
    assert flow.reading_paused
    flow.queue_shrank(waiting(1, 600), 1, 4, 1000)
    assert flow.reading_paused  # 600 > half of 1000
    flow.queue_shrank(waiting(1, 400), 1, 4, 1000)
    assert transport.calls == ["pause", "resume", "pause", "resume"]


def test_unsent_output_is_watched_once_and_a_stall_is_reported() -> None:
    clock, transport = FakeClock(), Transport()
    flow = Flow(transport)
    assert flow.wrote(100) == 0 and flow.watch_send(0, clock.now(), 30.0) == 0.0
    transport.buffered = 100
    assert flow.wrote(100) == 100
    first = flow.watch_send(100, clock.now(), 30.0)
    assert first == clock.now() + 30.0 / CHECKS_PER_TIMEOUT
    assert flow.watch_send(100, clock.now(), 30.0) == 0.0  # already watched
    clock.advance(30.0)
    assert flow.check_send(clock.now(), 30.0) == -1.0
    transport.buffered = 0
    assert flow.check_send(clock.now(), 30.0) == 0.0 and not flow.send.watching
