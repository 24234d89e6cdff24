"""The accept loop's decisions after a failed accept: which errors pause, the growing pause, the throttled log."""

from __future__ import annotations

import errno

from meshbatch.clock import FakeClock
from meshbatch.security.accept import AcceptBackoff, LogThrottle, error_name, skip_connection


def test_shortages_pause_and_per_connection_errors_do_not() -> None:
    for code in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.EBADF, None):
        assert not skip_connection(code)
    for code in (errno.ECONNABORTED, errno.EPROTO, errno.ENETUNREACH):
        assert skip_connection(code)
    assert error_name(errno.EMFILE) == "EMFILE" and error_name(None) == "OSError" and error_name(99999) == "OSError"


def test_the_pause_doubles_up_to_a_second_and_starts_over_after_a_success() -> None:
    backoff = AcceptBackoff()
    delays = [backoff.failed() for _ in range(10)]
    assert delays == [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.0, 1.0, 1.0]
    assert backoff.backing_off
    backoff.succeeded()
    assert not backoff.backing_off and backoff.failed() == 0.01


def test_one_log_line_per_interval_with_the_number_left_out() -> None:
    clock, throttle = FakeClock(), LogThrottle(5.0)
    assert throttle.allow(clock.now()) == 0
    for _ in range(1000):
        clock.advance(0.001)
        assert throttle.allow(clock.now()) is None
    clock.advance(5.0)
    assert throttle.allow(clock.now()) == 1000
    clock.advance(1.0)
    assert throttle.allow(clock.now()) is None
