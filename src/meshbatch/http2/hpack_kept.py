"""The blocks a `RepeatDecoder` keeps (http2/hpack_in.py), as they may be used now, compiled: both its `decode`
and the frame reader (http2/frames_in.py, which looks a block up without the decoder's Python-level calls) take
them from `kept_now`, so that what was kept is forgotten in one place, the moment the table or a limit differs
from what it was when they were kept. Pure.
"""

from __future__ import annotations

from typing import Any


def kept_now(decoder: Any) -> dict[bytes, list[Any]]:
    """The decoder's kept blocks (raw block -> its fields), emptied first when the table has changed (an insertion,
    a size) or a limit the decoder checks is another since they were kept."""
    table: Any = decoder.header_table
    state = (table.changes, decoder.max_header_list_size, decoder.max_allowed_table_size)
    kept: dict[bytes, list[Any]] = decoder._kept
    if state != decoder._state:
        kept.clear()
        decoder._state = state
    return kept


__all__ = ["kept_now"]
