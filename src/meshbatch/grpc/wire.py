"""The protobuf wire format, read and written by hand on the hot path (no protobuf import).

Only what batching needs: varints, field keys and length-delimited fields. The reader is for bytes an upstream
wrote, so it trusts nothing: a truncated varint, a varint longer than 10 bytes, a length past the end of the
buffer, a group (wire types 3 and 4, deprecated) or an unknown wire type raises `MalformedMessage` with a short reason.
It never allocates more than its input: lengths are checked against what is left before anything is sliced.
"""

from __future__ import annotations

from collections.abc import Iterator

VARINT, FIXED64, LEN, START_GROUP, END_GROUP, FIXED32 = 0, 1, 2, 3, 4, 5
_MAX_FIELD = (1 << 29) - 1


class MalformedMessage(ValueError):
    """Bytes that are not a well-formed protobuf message."""


def varint(value: int) -> bytes:
    """`value` as a varint; a negative int32/int64 takes ten bytes (two's complement on 64 bits), as protobuf
    writes it."""
    if value < 0:
        value &= (1 << 64) - 1
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def tag(field: int, wire_type: int) -> bytes:
    return varint((field << 3) | wire_type)


def delimited(field: int, data: bytes) -> bytes:
    """One length-delimited field: key, length, bytes (an embedded message, a string, bytes)."""
    return tag(field, LEN) + varint(len(data)) + data


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """(value, position after it); MalformedMessage when truncated or longer than ten bytes."""
    result = 0
    shift = 0
    end = len(buf)
    while True:
        if pos >= end:
            raise MalformedMessage("a varint is truncated")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result & ((1 << 64) - 1), pos
        shift += 7
        if shift >= 70:
            raise MalformedMessage("a varint is longer than ten bytes")


Field = tuple[int, int, "int | bytes"]


def fields(buf: bytes) -> Iterator[Field]:
    """(field number, wire type, value) of each field in order: an int for VARINT, FIXED32 and FIXED64, the
    bytes for LEN. Raises MalformedMessage at the first malformed field."""
    pos = 0
    end = len(buf)
    while pos < end:
        key, pos = read_varint(buf, pos)
        number, wire_type = key >> 3, key & 7
        if number == 0 or number > _MAX_FIELD:
            raise MalformedMessage(f"field number {number} is out of range")
        if wire_type == VARINT:
            value, pos = read_varint(buf, pos)
            yield number, wire_type, value
        elif wire_type == LEN:
            length, pos = read_varint(buf, pos)
            if length > end - pos:
                raise MalformedMessage(f"field {number} claims {length} bytes, {end - pos} are left")
            yield number, wire_type, buf[pos:pos + length]
            pos += length
        elif wire_type in (FIXED64, FIXED32):
            size = 8 if wire_type == FIXED64 else 4
            if size > end - pos:
                raise MalformedMessage(f"field {number} is truncated")
            yield number, wire_type, int.from_bytes(buf[pos:pos + size], "little")
            pos += size
        elif wire_type in (START_GROUP, END_GROUP):
            raise MalformedMessage(f"field {number} is a group (wire type {wire_type}), which is not supported")
        else:
            raise MalformedMessage(f"field {number} has wire type {wire_type}, which does not exist")


def as_bytes(number: int, wire_type: int, value: int | bytes) -> bytes:
    """A LEN field's bytes; MalformedMessage naming the field when it has another wire type."""
    if wire_type != LEN or not isinstance(value, bytes):
        raise MalformedMessage(f"field {number} has wire type {wire_type}, expected 2 (length-delimited)")
    return value


def as_int32(number: int, wire_type: int, value: int | bytes) -> int:
    """An int32 field's value (a VARINT, sign-extended from 64 bits)."""
    if wire_type != VARINT or not isinstance(value, int):
        raise MalformedMessage(f"field {number} has wire type {wire_type}, expected 0 (varint)")
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def as_text(number: int, wire_type: int, value: int | bytes) -> str:
    """A string field's text; MalformedMessage when it is not UTF-8 (protobuf requires it of proto3 strings)."""
    data = as_bytes(number, wire_type, value)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedMessage(f"field {number} is not UTF-8 text") from None


__all__ = ["FIXED32", "FIXED64", "LEN", "VARINT", "MalformedMessage", "as_bytes", "as_int32", "as_text", "delimited",
           "fields", "read_varint", "tag", "varint"]
