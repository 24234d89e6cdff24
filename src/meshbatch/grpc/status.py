"""gRPC status codes (grpc/grpc doc/statuscodes.md): the numbers on the wire in `grpc-status`, and their names as
config and metrics spell them (lower case, dashes: `resource-exhausted`, as Envoy's `retry_on` does)."""

from __future__ import annotations

from enum import IntEnum


class GrpcStatus(IntEnum):
    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16

    @property
    def label(self) -> str:
        """The name in config and metrics: `resource-exhausted`."""
        return self.name.lower().replace("_", "-")

    @classmethod
    def from_label(cls, label: str) -> GrpcStatus:
        """`resource-exhausted`, `RESOURCE_EXHAUSTED` or `8`; ValueError for anything else."""
        text = label.strip()
        if text.isdigit():
            return cls(int(text))
        return cls[text.upper().replace("-", "_")]


__all__ = ["GrpcStatus"]
