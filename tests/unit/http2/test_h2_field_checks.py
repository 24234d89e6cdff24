"""A received field's checks (http2/headers.py `field_problem`) give the same answer the first time a name is seen
and every time after, when the name is remembered as good, for any name and value; the names remembered are
bounded."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from meshbatch.http2 import headers
from meshbatch.http2.headers import FORBIDDEN_RECEIVED, NAME_CHARACTERS, field_problem


def reference(name: bytes, value: bytes) -> str:
    """RFC 9113 8.2.1-8.2.2, checked from scratch every time."""
    if not name or name.translate(None, NAME_CHARACTERS):
        return f"invalid field name {name[:64]!r}"
    if value:
        if b"\r" in value or b"\n" in value or b"\x00" in value:
            return f"invalid character in the value of {name[:64]!r}"
        if value[:1] in (b" ", b"\t") or value[-1:] in (b" ", b"\t"):
            return f"whitespace around the value of {name[:64]!r}"
    if name in FORBIDDEN_RECEIVED:
        return f"connection-specific field {name!r}"
    if name == b"te" and value.lower() != b"trailers":
        return "te other than trailers"
    return ""


NAMES = st.one_of(st.sampled_from([b"x-a", b"te", b"connection", b"X-Upper", b"", b"a b", b"content-type",
                                   b"x:y", b"\x7f"]), st.binary(max_size=8))
VALUES = st.one_of(st.sampled_from([b"", b"trailers", b"TRAILERS", b"gzip", b" v", b"v\t", b"a\r\nb", b"\x00"]),
                   st.binary(max_size=8))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(NAMES, VALUES), min_size=1, max_size=12))
def test_the_same_answer_first_and_after(fields: list[tuple[bytes, bytes]]) -> None:
    for _ in range(2):
        for name, value in fields:
            assert field_problem(name, value) == reference(name, value)


def test_the_names_remembered_are_bounded() -> None:
    for i in range(headers.MAX_GOOD_NAMES + 10):
        assert field_problem(b"x-%d" % i, b"v") == ""
    assert len(headers._GOOD_NAMES) <= headers.MAX_GOOD_NAMES
    assert field_problem(b"x-1", b"bad\n") and field_problem(b"te", b"gzip")
