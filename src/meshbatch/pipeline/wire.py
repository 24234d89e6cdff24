"""What the proxy and a pipeline worker process say to each other (sans-I/O: bytes in, values out).

Each message is a frame: a 4-byte big-endian length, then MessagePack. Three kinds:
- the proxy's first frame: the route's pipeline (`init`): its name, its steps as config mappings with every
  schema file already read (the worker builds its stages from exactly what the proxy checked), whether it has
  dead letters, and its limits; the worker answers `{"ready": true}` (or `{"error": why}`) once built;
- a job: `[body, headers, received]`;
- a result: `[events, body, headers, dead, dropped, failed, tally, error, cpu]`, events already encoded as JSON,
  `cpu` the worker's CPU seconds so far (so that the proxy can tell, of a worker that stops answering, whether
  it is computing or stuck).
MessagePack carries bytes as bytes (no base64, no pickling: a worker's answer is data, never code).
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack
import msgspec

from meshbatch.config.plain import PipelineRoute
from meshbatch.errors import BadRequest, PayloadTooLarge, ProxyError
from meshbatch.http.message import Headers
from meshbatch.pipeline.runner import Result
from meshbatch.pipeline.work import BudgetExceeded, InvalidEvent, UnsupportedEncoding

HEADER = struct.Struct(">I")
MAX_FRAME = 1 << 30  # a length above it means a corrupt stream, not a big answer
ERRORS: dict[str, type[ProxyError]] = {cls.__name__: cls for cls in (
    BadRequest, PayloadTooLarge, InvalidEvent, UnsupportedEncoding, BudgetExceeded)}


class FrameError(Exception):
    """A frame that is not what the protocol says (the worker is treated as broken)."""


def frame(value: Any) -> bytes:
    data: bytes = msgpack.packb(value, use_bin_type=True)
    return HEADER.pack(len(data)) + data


def length(head: bytes) -> int:
    (size,) = HEADER.unpack(head)
    if size > MAX_FRAME:
        raise FrameError(f"a frame of {size} bytes")
    return int(size)


def load(data: bytes) -> Any:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise FrameError(str(exc)) from None


def init(route: PipelineRoute, dead_letters: bool) -> dict[str, Any]:
    """The route's pipeline as the worker gets it (and as the proxy compares it on reload)."""
    from meshbatch.pipeline.stages.validate import load_schema

    steps = []
    for step in route.pipeline:
        mapping = {stage: options for stage, options in msgspec.to_builtins(step).items() if options is not None}
        if step.validate_ is not None:
            mapping["validate"]["schema"] = load_schema(step.validate_.schema_)
        steps.append(mapping)
    return {"route": route.name, "steps": steps, "dead_letters": dead_letters,
            "limits": msgspec.to_builtins(route.pipeline_limits)}


def job(body: bytes, headers: Headers, received: float) -> bytes:
    return frame([body, headers, received])


def read_job(value: Any) -> tuple[bytes, Headers, float]:
    body, headers, received = value
    return body, [(k, v) for k, v in headers], received


def result(outcome: Result, cpu: float) -> bytes:
    error = outcome.error
    wire_error = None if error is None else [type(error).__name__, error.status, error.reason, error.detail]
    return frame([outcome.events, outcome.body, outcome.headers, outcome.dead, outcome.dropped, outcome.failed,
                  outcome.tally, wire_error, cpu])


def read_result(value: Any) -> tuple[Result, float]:
    try:
        events, body, headers, dead, dropped, failed, tally, wire_error, cpu = value
        error: ProxyError | None = None
        if wire_error is not None:
            name, _status, reason, detail = wire_error
            cls = ERRORS.get(name)
            error = cls(reason, detail) if cls is not None else ProxyError("pipeline_error", detail)
        return Result(list(tally), error, body,
                      [(k, v) for k, v in headers] if headers is not None else None,
                      events, [(b, r, str(s)) for b, r, s in dead], dropped, failed), float(cpu)
    except (TypeError, ValueError) as exc:
        raise FrameError(f"not a result ({exc})") from None


__all__ = ["HEADER", "FrameError", "frame", "init", "job", "length", "load", "read_job", "read_result", "result"]
