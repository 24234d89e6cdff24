"""What the connection state machines (http/server_machine.py, http/client_machine.py) share: the error of an
event their transition table does not list."""

from __future__ import annotations


class IllegalTransition(Exception):
    """An event a connection's state does not allow: a bug in the caller, never the peer's doing (what a peer
    sends that is not allowed is a `ProxyError`)."""


__all__ = ["IllegalTransition"]
