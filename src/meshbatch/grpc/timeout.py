"""`grpc-timeout` (doc/PROTOCOL-HTTP2.md): `TimeoutValue TimeoutUnit`, at most 8 ASCII digits and one of
`H` (hours), `M` (minutes), `S` (seconds), `m` (milliseconds), `u` (microseconds), `n` (nanoseconds)."""

from __future__ import annotations

import math

HEADER = b"grpc-timeout"
MAX_DIGITS = 8
_UNITS: dict[int, float] = {ord("H"): 3600.0, ord("M"): 60.0, ord("S"): 1.0, ord("m"): 1e-3, ord("u"): 1e-6,
                            ord("n"): 1e-9}
# Units from the finest: format() picks the first in which the value fits 8 digits.
_FORMAT = ((b"n", 1e-9), (b"u", 1e-6), (b"m", 1e-3), (b"S", 1.0), (b"M", 60.0), (b"H", 3600.0))
_LIMIT = 10 ** MAX_DIGITS - 1


def parse(value: bytes) -> float:
    """Seconds; ValueError for anything that is not 1 to 8 digits and a unit."""
    text = value.strip()
    digits = text[:-1]
    unit = _UNITS.get(text[-1]) if text else None
    if unit is None or not digits or len(digits) > MAX_DIGITS or not digits.isdigit() or not digits.isascii():
        raise ValueError(f"grpc-timeout {value[:32]!r} is not 1 to 8 digits and a unit (H, M, S, m, u, n)")
    return int(digits) * unit


def format(seconds: float) -> bytes:
    """The most precise `grpc-timeout` for `seconds` within 8 digits (rounded up: never a shorter budget);
    0 or less is `0n`."""
    if seconds <= 0:
        return b"0n"
    for unit, scale in _FORMAT:
        count = math.ceil(round(seconds / scale, 6))  # rounded first: 0.1 s is 100m, not 101m
        if count <= _LIMIT:
            return b"%d%s" % (int(count), unit)
    return b"%dH" % _LIMIT


__all__ = ["HEADER", "MAX_DIGITS", "format", "parse"]
