"""The side effects of h2's stream state machine for the transitions a request and its answer take, compiled.

h2's `H2StreamStateMachine` runs a method of its own at most transitions (`request_received`, `data_received`,
`response_sent` ...): it sets the machine's flags and makes the event, a dataclass whose `__init__` is Python too.
Each function here is the method of the same name, with the same checks (an `AssertionError` where h2 asserts:
`steps.step` turns it into the `ProtocolError` h2 raises), the same flags set and an event equal to h2's, made
without the dataclass's `__init__` (the fields' defaults copied in, then the stream id). `steps` puts them in its
tables in place of h2's; a transition not listed here keeps h2's method. Tested against `process_input` from
every state and every combination of the flags they read (tests/unit/http2/test_h2_frames_in.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Final

from h2.events import (
    DataReceived,
    RequestReceived,
    ResponseReceived,
    StreamEnded,
    TrailersReceived,
    WindowUpdated,
    _RequestSent,
    _ResponseSent,
    _TrailersSent,
)
from h2.exceptions import ProtocolError
from h2.stream import H2StreamStateMachine, StreamClosedBy

_new: Final = object.__new__


def _defaults(cls: type) -> tuple[tuple[str, Any], ...]:
    """The fields a dataclass event's `__init__` sets after `stream_id` (the one each is given here), with the
    values it gives them when not passed, in its order."""
    fields = dataclasses.fields(cls)
    assert fields[0].name == "stream_id"
    return tuple((f.name, f.default) for f in fields[1:])


REQUEST_RECEIVED: Final = _defaults(RequestReceived)
RESPONSE_RECEIVED: Final = _defaults(ResponseReceived)
TRAILERS_RECEIVED: Final = _defaults(TrailersReceived)
DATA_RECEIVED: Final = _defaults(DataReceived)
STREAM_ENDED: Final = _defaults(StreamEnded)
WINDOW_UPDATED: Final = _defaults(WindowUpdated)


def _event(cls: type, defaults: tuple[tuple[str, Any], ...], stream_id: Any) -> Any:
    """`cls(stream_id=stream_id)`: the same attributes, in the same order."""
    event: Any = _new(cls)
    event.stream_id = stream_id
    for name, value in defaults:
        setattr(event, name, value)
    return event


def request_sent(machine: Any, previous: Any) -> list[Any]:
    machine.client = True
    machine.headers_sent = True
    return [_RequestSent()]


def response_sent(machine: Any, previous: Any) -> list[Any]:
    if not machine.headers_sent:
        if machine.client is True or machine.client is None:
            raise ProtocolError("Client cannot send responses.")
        machine.headers_sent = True
        return [_ResponseSent()]
    assert not machine.trailers_sent
    machine.trailers_sent = True
    return [_TrailersSent()]


def request_received(machine: Any, previous: Any) -> list[Any]:
    assert not machine.headers_received
    assert not machine.trailers_received
    machine.client = False
    machine.headers_received = True
    return [_event(RequestReceived, REQUEST_RECEIVED, machine.stream_id)]


def response_received(machine: Any, previous: Any) -> list[Any]:
    if not machine.headers_received:
        assert machine.client is True
        machine.headers_received = True
        return [_event(ResponseReceived, RESPONSE_RECEIVED, machine.stream_id)]
    assert not machine.trailers_received
    machine.trailers_received = True
    return [_event(TrailersReceived, TRAILERS_RECEIVED, machine.stream_id)]


def data_received(machine: Any, previous: Any) -> list[Any]:
    if not machine.headers_received:
        raise ProtocolError("cannot receive data before headers")
    return [_event(DataReceived, DATA_RECEIVED, machine.stream_id)]


def window_updated(machine: Any, previous: Any) -> list[Any]:
    return [_event(WindowUpdated, WINDOW_UPDATED, machine.stream_id)]


def stream_half_closed(machine: Any, previous: Any) -> list[Any]:
    return [_event(StreamEnded, STREAM_ENDED, machine.stream_id)]


def stream_ended(machine: Any, previous: Any) -> list[Any]:
    machine.stream_closed_by = StreamClosedBy.RECV_END_STREAM
    return [_event(StreamEnded, STREAM_ENDED, machine.stream_id)]


def send_end_stream(machine: Any, previous: Any) -> list[Any]:
    machine.stream_closed_by = StreamClosedBy.SEND_END_STREAM
    return []


# h2's method -> the function here that does the same
NATIVE: Final[dict[Any, Callable[[Any, Any], list[Any]]]] = {
    H2StreamStateMachine.request_sent: request_sent,
    H2StreamStateMachine.response_sent: response_sent,
    H2StreamStateMachine.request_received: request_received,
    H2StreamStateMachine.response_received: response_received,
    H2StreamStateMachine.data_received: data_received,
    H2StreamStateMachine.window_updated: window_updated,
    H2StreamStateMachine.stream_half_closed: stream_half_closed,
    H2StreamStateMachine.stream_ended: stream_ended,
    H2StreamStateMachine.send_end_stream: send_end_stream,
}

__all__ = ["NATIVE"]
