"""What one HTTP/2 connection may ask of the proxy, and the frame watch that refuses its attacks. No I/O.

HTTP/2 lets a client make the server work with frames that cost it nothing: streams opened and reset at once
(CVE-2023-44487, "rapid reset"), header blocks continued forever before END_HEADERS (the 2024 CONTINUATION
flood), a few bytes of HPACK that decode into megabytes (the HPACK bomb), SETTINGS and PING frames the server
must acknowledge, empty DATA frames, windows left shut so answers wait in memory. `FrameWatch` reads the frame
headers of every byte the client sends (9 bytes each; payloads are skipped, never copied) before the h2 state
machine sees them, and names the first limit crossed; the server then sends GOAWAY ENHANCE_YOUR_CALM, closes and
counts the reason. The windowed limits count per `window` seconds (a fixed window: cheap, and a burst is bounded
by twice the limit), like Envoy's and nginx's per-connection budgets.

    reason                  what is counted                                          limit
    h2_rapid_reset          RST_STREAM frames from the client, per window            max_resets
    h2_continuation_flood   bytes (or frames) of a header block before END_HEADERS   max_header_block_bytes, 32
    h2_settings_flood       SETTINGS frames (not acknowledgements), per window       max_settings
    h2_ping_flood           PING frames (not acknowledgements), per window           max_pings
    h2_empty_data_flood     DATA frames with no payload and no END_STREAM, in a row  max_empty_frames
    h2_too_many_streams     streams opened on the connection (0: no limit)           max_streams_per_connection

The HPACK bomb is refused by the decoder (`max_header_list_size` on the decoded size) and the zero-window stall
by the server's send watch; their reasons (`h2_hpack_bomb`, `h2_zero_window`) are counted the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA: Final = 0x0
HEADERS: Final = 0x1
RST_STREAM: Final = 0x3
SETTINGS: Final = 0x4
PING: Final = 0x6
CONTINUATION: Final = 0x9
END_STREAM: Final = 0x1
ACK: Final = 0x1
END_HEADERS: Final = 0x4
MAX_CONTINUATIONS: Final = 32  # frames of one header block after its HEADERS (h2 itself stops at 64)


@dataclass(frozen=True, slots=True)
class H2Limits:
    """A listener's HTTP/2 settings and attack limits (its `http2` block; docs/security.md, "HTTP/2")."""

    max_concurrent_streams: int = 100
    initial_window_size: int = 262_144  # per stream: what a client may send before the proxy reads it
    connection_window_size: int = 1_048_576
    max_frame_size: int = 16_384
    max_header_list_size: int = 65_536  # advertised; the listener's max_header_bytes (431 beyond it)
    header_table_size: int = 4_096  # the HPACK dynamic table the client's encoder may use
    max_streams_per_connection: int = 0  # then GOAWAY NO_ERROR: the client goes on on a new connection
    max_resets: int = 100  # per window
    max_settings: int = 50
    max_pings: int = 100
    max_empty_frames: int = 10  # in a row (Envoy's max_consecutive_inbound_frames_with_empty_payload)
    window: float = 10.0  # seconds

    @property
    def max_header_block_bytes(self) -> int:
        """Encoded bytes of one header block: HPACK may grow a field a little (Huffman), never by half."""
        return self.max_header_list_size * 3 // 2 + 1024

    @property
    def max_decoded_header_bytes(self) -> int:
        """Decoded bytes past which a header block is an HPACK bomb (connection closed; below it: 431)."""
        return self.max_header_list_size * 2


class FrameWatch:
    """Reads frame headers from the client's bytes (after the preface) and counts them against `H2Limits`.

    `feed(data, now)` returns the reason of the first limit crossed (then the connection is to be closed and this
    object is not fed again), else None. `opened(now)` counts a new stream the same way.
    """

    __slots__ = ("_block", "_continuations", "_counts", "_empty", "_head", "_preface", "_skip", "_window_start",
                 "limits", "streams")

    def __init__(self, limits: H2Limits, now: float, preface: bool = True) -> None:
        self.limits = limits
        self._preface = len(PREFACE) if preface else 0  # preface bytes still to pass
        self._head = b""  # a frame header split across reads
        self._skip = 0  # payload bytes of the current frame still to pass
        self._block = -1  # encoded bytes of the open header block (-1: none open)
        self._continuations = 0
        self._empty = 0
        self._window_start = now
        self._counts = [0, 0, 0]  # resets, settings, pings in this window
        self.streams = 0  # streams opened on the connection

    @property
    def header_block_open(self) -> bool:
        """A header block awaits its END_HEADERS (the header timeout runs)."""
        return self._block >= 0

    def _tick(self, now: float) -> list[int]:
        if now - self._window_start >= self.limits.window:
            self._window_start = now
            self._counts = [0, 0, 0]
        return self._counts

    def opened(self, now: float) -> str | None:
        self.streams += 1
        cap = self.limits.max_streams_per_connection
        if cap and self.streams > cap:
            return "h2_too_many_streams"
        return None

    def feed(self, data: bytes, now: float) -> str | None:
        at = 0
        end = len(data)
        if self._preface:
            taken = min(self._preface, end)
            self._preface -= taken
            at = taken
        while at < end:
            if self._skip:
                taken = min(self._skip, end - at)
                self._skip -= taken
                at += taken
                continue
            need = 9 - len(self._head)
            if need < 9 or end - at < 9:
                piece = data[at:at + need]
                self._head += piece
                at += len(piece)
                if len(self._head) < 9:
                    break
                head, self._head = self._head, b""
            else:
                head = data[at:at + 9]
                at += 9
            reason = self._frame((head[0] << 16) | (head[1] << 8) | head[2], head[3], head[4], now)
            if reason is not None:
                return reason
        return None

    def _frame(self, length: int, kind: int, flags: int, now: float) -> str | None:
        self._skip = length
        limits = self.limits
        if kind == DATA:
            if length == 0 and not flags & END_STREAM:
                self._empty += 1
                if self._empty > limits.max_empty_frames:
                    return "h2_empty_data_flood"
            else:
                self._empty = 0
            return None
        if kind in (HEADERS, CONTINUATION):
            if kind == HEADERS:
                self._block = length
                self._continuations = 0
            elif self._block >= 0:
                self._block += length
                self._continuations += 1
            if self._block > limits.max_header_block_bytes or self._continuations > MAX_CONTINUATIONS:
                return "h2_continuation_flood"
            if flags & END_HEADERS:
                self._block = -1
            return None
        if kind == RST_STREAM:
            counts = self._tick(now)
            counts[0] += 1
            return "h2_rapid_reset" if counts[0] > limits.max_resets else None
        if kind == SETTINGS and not flags & ACK:
            counts = self._tick(now)
            counts[1] += 1
            return "h2_settings_flood" if counts[1] > limits.max_settings else None
        if kind == PING and not flags & ACK:
            counts = self._tick(now)
            counts[2] += 1
            return "h2_ping_flood" if counts[2] > limits.max_pings else None
        return None


__all__ = ["PREFACE", "FrameWatch", "H2Limits"]
