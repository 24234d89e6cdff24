"""h2's stream state machine stepped without its per-input overhead, and its connection's stream bookkeeping,
for the frames read and written below h2 (http2/frames_in.py, http2/whole_answer.py, http2/whole_request.py).

`H2StreamStateMachine.process_input` checks the input's type and looks the transition up by a (state, input)
tuple whose two enum members hash through Python-level `__hash__` methods: more than the transition itself for
the five steps an answered request takes. `step` takes the same transition from a list indexed by the state (an
`IntEnum`, so a plain index), with the same side effects, events and errors; a state with no transition for the
input is left to `process_input`, which refuses it as before. The tables are made from h2's own at import, with
the side effects of the common transitions compiled (http2/transitions.py).

`open_streams` is h2's `_open_streams` (the count behind `open_inbound_streams` and `open_outbound_streams`, which
also moves the closed streams out of `conn.streams`, into h2's size-limited dict of closed streams), and
`new_stream` its `_begin_new_stream` for an id already checked, without their debug-log calls: both run for every
stream. `outgoing` is its `data_to_send()`, taken after every read and write. `setting` reads a setting's
current value as h2's `Settings` properties do, without their three Python-level calls (a property,
`Mapping.get`, `__getitem__`).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Final, cast

from h2.connection import H2Connection
from h2.exceptions import ProtocolError
from h2.settings import SettingCodes, Settings
from h2.stream import H2Stream, H2StreamStateMachine, StreamInputs, StreamState, _transitions
from h2.utilities import SizeLimitDict

from meshbatch.http2.transitions import NATIVE

INITIAL_WINDOW_SIZE: Final = int(SettingCodes.INITIAL_WINDOW_SIZE)
MAX_CONCURRENT_STREAMS: Final = int(SettingCodes.MAX_CONCURRENT_STREAMS)
UNLIMITED_STREAMS: Final = 2**32 + 1  # (h2's `max_concurrent_streams` when the peer set none)
_remember: Final = OrderedDict.__setitem__
_OPEN: Final[Any] = StreamState.OPEN
_HALF_CLOSED_LOCAL: Final[Any] = StreamState.HALF_CLOSED_LOCAL
_HALF_CLOSED_REMOTE: Final[Any] = StreamState.HALF_CLOSED_REMOTE
_CLOSED: Final[Any] = StreamState.CLOSED


def _entry(transition: Any) -> Any:
    """h2's (method, target) with the method replaced by its compiled twin where there is one (transitions.py)."""
    if transition is None:
        return None
    func, target = transition
    return (NATIVE.get(func, func) if func is not None else None), target


def _table(given: StreamInputs) -> list[Any]:
    """Each state's (function, target) for `given`, indexed by the state, None where h2 has none; `given` last."""
    return [*(_entry(_transitions.get((state, given))) for state in sorted(StreamState, key=int)), given]


RECV_HEADERS: Final = _table(StreamInputs.RECV_HEADERS)
RECV_INFORMATIONAL_HEADERS: Final = _table(StreamInputs.RECV_INFORMATIONAL_HEADERS)
RECV_DATA: Final = _table(StreamInputs.RECV_DATA)
RECV_END_STREAM: Final = _table(StreamInputs.RECV_END_STREAM)
RECV_WINDOW_UPDATE: Final = _table(StreamInputs.RECV_WINDOW_UPDATE)
SEND_HEADERS: Final = _table(StreamInputs.SEND_HEADERS)
SEND_DATA: Final = _table(StreamInputs.SEND_DATA)
SEND_END_STREAM: Final = _table(StreamInputs.SEND_END_STREAM)


def step(machine: H2StreamStateMachine, table: list[Any]) -> list[Any]:
    """`machine.process_input(input)` for the input whose `table` this is: the same events and errors."""
    previous = machine.state
    entry = table[previous]
    if entry is None:  # (h2 closes the stream and raises ProtocolError)
        return machine.process_input(table[-1])
    func, target = entry
    machine.state = target
    if func is None:
        return []
    try:
        events: list[Any] = func(machine, previous)
        return events
    except ProtocolError:
        machine.state = StreamState.CLOSED
        raise
    except AssertionError as error:
        machine.state = StreamState.CLOSED
        raise ProtocolError(error) from error


def open_streams(conn: H2Connection, remainder: int) -> int:
    """The open streams whose id is `remainder` modulo 2; the closed ones leave `conn.streams` for
    `conn._closed_streams` (h2's `_open_streams`)."""
    count = 0
    closed: list[int] = []
    for sid, stream in conn.streams.items():
        state = stream.state_machine.state  # (h2's states are enum members: told apart by identity, which
        if state is _OPEN or state is _HALF_CLOSED_REMOTE or state is _HALF_CLOSED_LOCAL:  # costs no
            if sid & 1 == remainder:  # Python-level `__hash__` or index conversion)
                count += 1
        elif state is _CLOSED:
            closed.append(sid)
    if closed:
        streams = conn.streams
        gone = cast(SizeLimitDict, conn._closed_streams)
        limit = gone._size_limit
        for sid in closed:  # (h2's `SizeLimitDict.__setitem__`: the oldest forgotten beyond its limit)
            _remember(gone, sid, streams.pop(sid).state_machine.stream_closed_by)
            if limit is not None:
                while len(gone) > limit:
                    gone.popitem(last=False)
    return count


def setting(settings: Settings, code: int, default: int) -> int:
    """`settings[code]`, the setting's value now (the first of its values: later ones await acknowledgement), or
    `default` when it has none (`Settings.get(code, default)`)."""
    values: Any = settings._settings.get(code)  # (h2 types the values int; one first set, not yet acknowledged,
    if values is None:  # is None)
        return default
    value: int | None = values[0]
    return default if value is None else value


def streams_allowed(settings: Settings) -> int:
    """`settings.max_concurrent_streams`: the streams the peer allows open (h2's 2^32+1 when it set no limit)."""
    return setting(settings, MAX_CONCURRENT_STREAMS, UNLIMITED_STREAMS)


def client_side(conn: H2Connection) -> bool:
    """`conn.config.client_side`, read where its descriptor (a Python-level `__get__`) reads it."""
    config: Any = conn.config
    side: bool = config._client_side
    return side


def next_stream_id(conn: H2Connection) -> int:
    """h2's `get_next_available_stream_id` (without its debug-log call): 0 when the ids ran out (h2 raises)."""
    last = conn.highest_outbound_stream_id
    sid = last + 2 if last else (1 if client_side(conn) else 2)
    return 0 if sid > conn.HIGHEST_ALLOWED_STREAM_ID else sid


def outgoing(conn: H2Connection) -> bytes:
    """h2's `data_to_send()`: the bytes it has queued to send, taken."""
    queued = conn._data_to_send
    if not queued:
        return b""
    conn._data_to_send = bytearray()
    return bytes(queued)


def new_stream(conn: H2Connection, sid: int, outbound: bool) -> H2Stream:
    """h2's `_begin_new_stream` for `sid`, known to be above the highest of its side and of the right parity."""
    stream = H2Stream(sid, config=conn.config,
                      inbound_window_size=setting(conn.local_settings, INITIAL_WINDOW_SIZE, 65_535),
                      outbound_window_size=setting(conn.remote_settings, INITIAL_WINDOW_SIZE, 65_535))
    stream.max_outbound_frame_size = conn.max_outbound_frame_size
    conn.streams[sid] = stream
    if outbound:
        conn.highest_outbound_stream_id = sid
    else:
        conn.highest_inbound_stream_id = sid
    return stream


__all__ = ["INITIAL_WINDOW_SIZE", "MAX_CONCURRENT_STREAMS", "RECV_DATA", "RECV_END_STREAM", "RECV_HEADERS",
           "RECV_INFORMATIONAL_HEADERS", "RECV_WINDOW_UPDATE", "SEND_DATA", "SEND_END_STREAM", "SEND_HEADERS",
           "UNLIMITED_STREAMS", "client_side", "new_stream", "next_stream_id", "open_streams", "outgoing", "setting",
           "step", "streams_allowed"]
