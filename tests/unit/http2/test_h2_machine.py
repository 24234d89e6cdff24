"""h2's connection without its per-frame trace formatting: the copied method is still h2's, and frames that reach
a stream closed by a reset or by its end are handled as h2 handles them."""

from __future__ import annotations

import hashlib
import inspect

import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from hyperframe.frame import DataFrame, RstStreamFrame

from meshbatch.http2.machine import QuietConnection

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
