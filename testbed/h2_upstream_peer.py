"""The upstream end of an in-memory HTTP/2 connection, for the sans-socket tests of the client connection: h2's
server side fed with what the client wrote to its `FakeTransport` (testbed/transport.py); what the test makes it
send goes back to the client with `answer`."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import h2.settings

from meshbatch.http2.client import MultiplexedConnection
from meshbatch.http2.state import after_goaway
from testbed.transport import FakeTransport

SERVER_AFTER_GOAWAY = after_goaway(h2.connection.ConnectionState.SERVER_OPEN)


class Peer:
    """The upstream: h2's server side, fed with what the client wrote; `answer` writes back to the client."""

    def __init__(self, conn: MultiplexedConnection, transport: FakeTransport, **settings: int) -> None:
        self.conn = conn
        self.transport = transport
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
        self.h2.local_settings = h2.settings.Settings(client=False, initial_values={
            getattr(h2.settings.SettingCodes, name.upper()): value for name, value in settings.items()})
        self.h2.state_machine._transitions = SERVER_AFTER_GOAWAY  # type: ignore[misc]
        self.h2.initiate_connection()
        self.events: list[h2.events.Event] = []
        self.answered: set[int] = set()  # streams a test has answered (its bookkeeping)
        self.read()
        self.answer()

    def read(self) -> list[h2.events.Event]:
        self.conn.write_pending()  # what the connection deferred to the end of the loop's turn: the test reads now
        data = self.transport.data
        self.transport.written.clear()
        events = self.h2.receive_data(data) if data else []
        self.events += events
        return events

    def answer(self, raw: bytes = b"") -> None:
        data = self.h2.data_to_send() + raw
        if data:
            self.conn.data_received(data)
        self.read()

    def requests(self) -> dict[int, list[tuple[bytes, bytes]]]:
        return {e.stream_id: list(e.headers) for e in self.events if isinstance(e, h2.events.RequestReceived)}

    def resets(self) -> list[tuple[int, int]]:
        return [(e.stream_id, e.error_code) for e in self.events if isinstance(e, h2.events.StreamReset)]

    def body(self, stream_id: int) -> bytes:
        return b"".join(e.data for e in self.events if isinstance(e, h2.events.DataReceived)
                        and e.stream_id == stream_id)


__all__ = ["Peer"]
