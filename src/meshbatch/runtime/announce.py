"""The lifecycle lines of `meshbatch run` on stderr (`listening`, `ready`, `reloaded`, `draining` ...), in the
shape of every log record (config/redact.py `LOG_FORMAT`), written whatever the log level says."""

from __future__ import annotations

import logging
import sys

from meshbatch.config.redact import LOG_FORMAT, RedactingFormatter

_LIFECYCLE = RedactingFormatter(LOG_FORMAT)


def announce_line(line: str) -> None:
    """A lifecycle line (`meshbatch: ready ...`) on stderr in the shape of every log record, whatever the log
    level: `2026-12-03 17:58:01,123 INFO meshbatch: ready config=... pid=...` (`WARNING: ...` lines as warnings)."""
    name, _, message = line.partition(": ")
    level = logging.INFO
    if message.startswith("WARNING: "):
        level, message = logging.WARNING, message.removeprefix("WARNING: ")
    record = logging.LogRecord(name, level, __file__, 0, message, None, None)
    print(_LIFECYCLE.format(record), file=sys.stderr, flush=True)


__all__ = ["announce_line"]
