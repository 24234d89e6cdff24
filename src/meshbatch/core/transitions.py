"""State machines as tables (h11's `_state.py`): the moves of a state machine written as data, and one error.

A `Transitions` maps (state, event) to the next state; every pair absent is illegal, and `step` raises
`IllegalTransition` naming the machine, its state, the refused event and the events allowed in that state. The
breaker of an endpoint (upstream/breaker.py) and the lifecycle of a batch (batching/batch.py) are such tables.
Pure.
"""

from __future__ import annotations

from collections.abc import Mapping


class IllegalTransition(Exception):
    """An event a state machine does not allow in its state; nothing changed. Always a bug in the caller of the
    machine, never the doing of a peer (what a peer sends that is not allowed is a `ProxyError`).

    Table machines (`Transitions`) raise it through `refused`; the HTTP connection machines (http/server_machine.py,
    http/client_machine.py), whose hot tables are lists of integers, raise it with their own message."""

    def __init__(self, message: str, kind: str = "", name: str = "", state: str = "", event: str = "",
                 allowed: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.kind = kind
        self.name = name
        self.state = state
        self.event = event
        self.allowed = list(allowed)

    @classmethod
    def of(cls, kind: str, state: str, event: str) -> IllegalTransition:
        """The error of a machine whose table is not a `Transitions` (the HTTP connections' integer tables)."""
        return cls(f"{kind}: cannot {event} in state {state}", kind, "", state, event)

    @classmethod
    def refused(cls, machine: Transitions, name: str, state: str, event: str) -> IllegalTransition:
        allowed = machine.allowed(state)
        where = machine.where.format(kind=machine.kind, state=state)
        hint = f"; allowed: {', '.join(allowed)}" if allowed else f"; the {machine.kind} is finished"
        return cls(f"{machine.kind} {name}: cannot {event} {where}{hint}", machine.kind, name, state, event,
                   tuple(allowed))


class Transitions:
    """One state machine's table. `where` phrases the state in the error ("when {state}", "a batch that is
    {state}")."""

    __slots__ = ("kind", "table", "where")

    def __init__(self, kind: str, table: Mapping[tuple[str, str], str], where: str = "when {state}") -> None:
        self.kind = kind
        self.table = dict(table)
        self.where = where

    def step(self, name: str, state: str, event: str) -> str:
        """The state `event` leads to from `state`; raises IllegalTransition when the table has no such move."""
        after = self.table.get((state, event))
        if after is None:
            raise IllegalTransition.refused(self, name, state, event)
        return after

    def allowed(self, state: str) -> list[str]:
        return sorted(e for (s, e) in self.table if s == state)

    def states(self) -> set[str]:
        return {s for s, _ in self.table} | set(self.table.values())


def step(machine: Transitions, name: str, state: str, event: str) -> str:
    """`machine.step(...)`, as a function."""
    return machine.step(name, state, event)


__all__ = ["IllegalTransition", "Transitions", "step"]
