"""The GIL hand-off between the event loop and the SQLite threads (the log's writer, the sqlite sink).

Each SQLite statement gives up the GIL and takes it back. While the event loop is busy, taking it back waits up to
the interpreter's switch interval (5 ms by default), and a group commit is several such hand-offs: 64 producers
waiting on commits that each lose milliseconds this way were measured here at ~20% fewer events/s than with a
1 ms interval. So the processes that run these threads use 1 ms (never a longer interval than already set).
"""

from __future__ import annotations

import sys

SWITCH_INTERVAL = 0.001


def shorten_switch_interval() -> None:
    if sys.getswitchinterval() > SWITCH_INTERVAL:
        sys.setswitchinterval(SWITCH_INTERVAL)


__all__ = ["SWITCH_INTERVAL", "shorten_switch_interval"]
