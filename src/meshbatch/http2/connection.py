"""The h2 state machine of a downstream HTTP/2 connection, with the listener's limits in its first SETTINGS.

Inbound heads are checked by http2/head.py alone (RFC 9113 8.2-8.3 and what HTTP/1.1 requests get): h2's own
checks and cookie joining, generators per field, were more than a third of what a request's head cost. Outbound
ones are built by the proxy (http2/response.py: lower-case names, no connection-specific field), so h2 need not
check them again either: that check was a quarter of the time h2 spent per answer.
"""

from __future__ import annotations

import base64
from typing import cast

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.settings import SettingCodes, Settings
from h2.utilities import SizeLimitDict

from meshbatch.http2.hpack_in import RepeatDecoder
from meshbatch.http2.hpack_out import StaticEncoder
from meshbatch.http2.limits import H2Limits
from meshbatch.http2.machine import CLOSED_STREAMS_KEPT, QuietConnection

_CONFIG = H2Configuration(client_side=False, header_encoding=None, validate_inbound_headers=False,
                          normalize_inbound_headers=False, validate_outbound_headers=False,
                          normalize_outbound_headers=False)


def new_connection(limits: H2Limits, upgrade: bytes | None = None) -> H2Connection:
    """A server connection whose first SETTINGS carry the listener's limits (in force from the first frame).

    `upgrade`: the client's SETTINGS payload from `HTTP2-Settings` (h2c by Upgrade, http/upgrade.py checked it):
    the connection starts with stream 1 half-closed (remote), the upgrading request's. h2 raises on settings
    it refuses (then nothing was sent)."""
    conn = QuietConnection(config=_CONFIG)  # (h2's, without formatting each frame for its trace log)
    conn.encoder = StaticEncoder()  # answers' fields: static table and cached literals (http2/hpack_out.py)
    conn.decoder = RepeatDecoder()  # requests' blocks that repeat are decoded once (http2/hpack_in.py)
    conn.local_settings = Settings(client=False, initial_values={
        SettingCodes.MAX_CONCURRENT_STREAMS: limits.max_concurrent_streams,
        SettingCodes.INITIAL_WINDOW_SIZE: limits.initial_window_size,
        SettingCodes.MAX_FRAME_SIZE: limits.max_frame_size,
        SettingCodes.MAX_HEADER_LIST_SIZE: limits.max_decoded_header_bytes,
        SettingCodes.HEADER_TABLE_SIZE: limits.header_table_size,
        SettingCodes.ENABLE_PUSH: 0,
    })
    conn.max_inbound_frame_size = limits.max_frame_size
    # closed streams remembered: ten times the streams open at once, at least CLOSED_STREAMS_KEPT (http2/machine.py)
    closed = cast(SizeLimitDict, conn._closed_streams)
    closed._size_limit = max(CLOSED_STREAMS_KEPT, 10 * limits.max_concurrent_streams)
    conn.decoder.max_header_list_size = limits.max_decoded_header_bytes  # beyond it: an HPACK bomb
    conn.decoder.max_allowed_table_size = limits.header_table_size
    if upgrade is None:
        conn.initiate_connection()
    else:
        conn.initiate_upgrade_connection(base64.urlsafe_b64encode(upgrade))
    extra = limits.connection_window_size - 65_535
    if extra > 0:
        conn.increment_flow_control_window(extra)
    return conn


__all__ = ["new_connection"]
