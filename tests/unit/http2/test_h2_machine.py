"""h2's connection without its per-frame trace formatting: the copied method is still h2's, and frames that reach
a stream closed by a reset or by its end are handled as h2 handles them."""

from __future__ import annotations

import hashlib
import inspect

import h2.connection
import h2.exceptions
import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from hyperframe.frame import DataFrame, HeadersFrame, RstStreamFrame

from meshbatch.http2.connection import new_connection
from meshbatch.http2.limits import H2Limits
from meshbatch.http2.machine import CLOSED_STREAMS_KEPT, QuietConnection

# sha256 of h2 4.4's H2Connection._receive_frame, the method QuietConnection copies without its trace line: an h2
# whose method differs needs the copy looked at again (then this changes with it).
H2_RECEIVE_FRAME = "39b2e16b4fd74ed014ca144a0c6e388aef3dc51f116d6f0a874b70d92bd92873"


def test_the_copied_method_is_the_installed_h2s() -> None:
    source = inspect.getsource(H2Connection._receive_frame)
    assert hashlib.sha256(source.encode()).hexdigest() == H2_RECEIVE_FRAME
    assert source.count("\n") - source.count("self.config.logger.trace") > 0


def outcome(kind: type[H2Connection], after: str) -> tuple[str, bytes]:
    """What a server connection of `kind` makes of a DATA frame on stream 1 after `after` closed it."""
    client = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    server = kind(H2Configuration(client_side=False, header_encoding=None))
    client.initiate_connection()
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    client.send_headers(1, [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"a")],
                        end_stream=after == "end")
    server.receive_data(client.data_to_send())
    if after == "reset":
        server.reset_stream(1, ErrorCodes.CANCEL)
    else:
        server.send_headers(1, [(b":status", b"200")], end_stream=True)
    server.data_to_send()
    try:
        events = server.receive_data(DataFrame(1, b"late").serialize())
    except Exception as error:  # (the outcome is compared, whatever it is)
        return type(error).__name__, server.data_to_send()
    return repr(events), server.data_to_send()


@pytest.mark.parametrize("after", ["reset", "end"])
def test_a_frame_on_a_closed_stream_is_handled_as_h2_handles_it(after: str) -> None:
    ours = outcome(QuietConnection, after)
    assert ours == outcome(H2Connection, after)
    if after == "reset":
        assert ours[1][3] == RstStreamFrame.type


def test_the_closed_streams_remembered_are_bounded() -> None:
    """A client that opens and finishes stream after stream leaves at most `CLOSED_STREAMS_KEPT` closed streams
    in the server's memory (h2 keeps 65,536, some 10 MB a connection). A late DATA frame is a stream error
    whether its stream is remembered or forgotten; HEADERS on a forgotten one is a connection error, as h2 makes
    it beyond its own bound."""
    client = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    server = new_connection(H2Limits())
    client.initiate_connection()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    count = CLOSED_STREAMS_KEPT + 500
    for sid in range(1, 2 * count, 2):
        client.send_headers(sid, [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"),
                                  (b":authority", b"a")], end_stream=True)
        server.receive_data(client.data_to_send())
        server.reset_stream(sid, ErrorCodes.CANCEL)  # (closed by a reset: a late frame on it is a stream error)
        client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())  # (sweeps the closed streams, as a new stream's count does)
    server.open_inbound_streams  # noqa: B018
    remembered = server._closed_streams  # type: ignore[attr-defined]
    assert len(remembered) <= CLOSED_STREAMS_KEPT and len(server.streams) <= 1
    recent, forgotten = 2 * count - 1, 1
    assert recent in remembered and forgotten not in remembered
    for sid in (recent, forgotten):
        server.receive_data(DataFrame(sid, b"late").serialize())
        sent = server.data_to_send()  # RST_STREAM back, the connection open
        assert sent[3] == RstStreamFrame.type and int.from_bytes(sent[5:9], "big") == sid
        assert server.state_machine.state != h2.connection.ConnectionState.CLOSED
    late = HeadersFrame(forgotten)
    late.data = b"\x82"
    late.flags.add("END_HEADERS")
    with pytest.raises(h2.exceptions.ProtocolError):
        server.receive_data(late.serialize())


def test_a_listener_that_allows_more_streams_remembers_more() -> None:
    assert new_connection(H2Limits())._closed_streams._size_limit == CLOSED_STREAMS_KEPT  # type: ignore[attr-defined]
    wide = new_connection(H2Limits(max_concurrent_streams=1000))
    assert wide._closed_streams._size_limit == 10_000  # type: ignore[attr-defined]
