"""h2's connection state machine, as the connections of this package use it."""

from __future__ import annotations

from typing import Any, Final

import h2.connection


def after_goaway(open_state: h2.connection.ConnectionState) -> dict[Any, Any]:
    """h2's connection transitions, plus: once a GOAWAY went either way, what was taken while open is still taken.

    h2 refuses every frame after a GOAWAY, and the frames that follow it in the same read are lost with it; but
    RFC 9113 6.8 lets the streams a GOAWAY names as processed run to their end (a graceful shutdown). New streams
    are barred above h2 (the client connection's `goaway`; a server refuses them itself)."""
    machine = h2.connection.H2ConnectionStateMachine
    table = dict(machine._transitions)
    closed = h2.connection.ConnectionState.CLOSED
    for (state, given), (action, _) in machine._transitions.items():
        if state == open_state:
            table.setdefault((closed, given), (action, closed))
    return table


CLIENT_AFTER_GOAWAY: Final = after_goaway(h2.connection.ConnectionState.CLIENT_OPEN)


__all__ = ["CLIENT_AFTER_GOAWAY", "after_goaway"]
