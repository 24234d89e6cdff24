"""An in-memory transport for the sans-socket tests of protocols (upstream connections, downstream streams).

It records what is written, how much is "unsent" (`buffered`, set by the test to play a peer that does not
read), whether reading is paused, and whether it was closed or aborted. Closing calls the protocol's
`connection_lost` on the next loop turn, as a real transport does; `peer_closed()` plays the peer closing.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from meshbatch.http.client import UpstreamConnection
    from meshbatch.http.message import Response


class FakeTransport:
    def __init__(self, protocol: asyncio.BaseProtocol | None = None) -> None:
        self.protocol = protocol
        self.written: list[bytes] = []
        self.buffered = 0
        self.reading = True
        self.closing = False
        self.aborted = False
        self.high = 65_536
        self.low = 16_384
        self.lost = False

    # asyncio.Transport ---------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        assert not self.closing, "write after close"
        self.written.append(bytes(data))

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.high = high if high is not None else self.high
        self.low = low if low is not None else self.high // 4

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self.low, self.high

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self._lose()

    def abort(self) -> None:
        self.aborted = True
        self._lose()

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol | None:
        return self.protocol

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    # for tests -----------------------------------------------------------------------------------
    def _lose(self) -> None:
        if self.closing:
            return
        self.closing = True
        asyncio.get_running_loop().call_soon(self._connection_lost)

    def peer_closed(self) -> None:
        """The peer closed the connection: `connection_lost` now."""
        self.closing = True
        self._connection_lost()

    def _connection_lost(self) -> None:
        if not self.lost:
            self.lost = True
            if self.protocol is not None:
                self.protocol.connection_lost(None)

    @property
    def data(self) -> bytes:
        return b"".join(self.written)


class Recorder:
    """In place of an exchange's future: counts outcomes, and notes whether the connection was reusable at
    the moment one arrived (what the fast path sees when it hands the connection back to its pool)."""

    def __init__(self, conn: UpstreamConnection) -> None:
        self.conn = conn
        self.results: list[Response] = []
        self.errors: list[BaseException] = []
        self.usable_then: bool | None = None

    def done(self) -> bool:
        return bool(self.results or self.errors)

    def set_result(self, result: Response, /) -> None:
        self.usable_then = self.conn.usable
        self.results.append(result)

    def set_exception(self, exception: BaseException, /) -> None:
        self.usable_then = self.conn.usable
        self.errors.append(exception)

    @property
    def outcomes(self) -> int:
        return len(self.results) + len(self.errors)


def connect(protocol: asyncio.BaseProtocol) -> FakeTransport:
    """A FakeTransport attached to `protocol` (its connection_made called)."""
    transport = FakeTransport(protocol)
    protocol.connection_made(transport)  # type: ignore[arg-type]
    return transport


__all__ = ["FakeTransport", "Recorder", "connect"]
