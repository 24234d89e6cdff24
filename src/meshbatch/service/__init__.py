"""The request stack's types: one typed per-request context (`Call`) and one service interface (`Service`, with
an optional synchronous `FastPath`), composed per route into a `RouteStack` once per config snapshot."""

from meshbatch.service.call import Call
from meshbatch.service.stack import Check, FastPath, Pending, Respond, RouteStack, Service

__all__ = ["Call", "Check", "FastPath", "Pending", "Respond", "RouteStack", "Service"]
