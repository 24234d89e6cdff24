"""gRPC message framing and grpc-timeout: the bytes on the wire, and hostile bodies refused with gRPC's status."""

import gzip

import pytest

from meshbatch.grpc import framing, timeout
from meshbatch.grpc.status import GrpcStatus


def test_frame_and_read_back():
    assert framing.frame(b"abc") == b"\x00\x00\x00\x00\x03abc"
    assert framing.frame(b"", compressed=True) == b"\x01\x00\x00\x00\x00"
    assert framing.unary(framing.frame(b"abc")) == b"abc"
    assert framing.unary(framing.frame(b"")) == b""
    assert list(framing.messages(framing.frame(b"a") + framing.frame(b"bc"))) == [b"a", b"bc"]


@pytest.mark.parametrize(("body", "status", "words"), [
    (b"", GrpcStatus.INTERNAL, "no message"),
    (framing.frame(b"a") + framing.frame(b"b"), GrpcStatus.INTERNAL, "more than one"),
    (b"\x00\x00\x00", GrpcStatus.INTERNAL, "prefix is truncated"),
    (b"\x00\x00\x00\x00\x09abc", GrpcStatus.INTERNAL, "claims 9 bytes"),
    (b"\x02\x00\x00\x00\x01a", GrpcStatus.INTERNAL, "flag byte 2"),
    (b"\x00\xff\xff\xff\xff", GrpcStatus.RESOURCE_EXHAUSTED, "larger than the limit"),
    (framing.frame(b"x", compressed=True), GrpcStatus.INTERNAL, "no grpc-encoding"),
])
def test_bad_bodies(body, status, words):
    with pytest.raises(framing.FramingError) as caught:
        framing.unary(body)
    assert caught.value.status == status and words in caught.value.message


def test_size_limit_is_checked_before_copying():
    with pytest.raises(framing.FramingError) as caught:
        framing.unary(framing.frame(b"x" * 11), max_size=10)
    assert caught.value.status == GrpcStatus.RESOURCE_EXHAUSTED


def test_gzip_messages():
    packed = framing.frame(gzip.compress(b"hello"), compressed=True)
    assert framing.unary(packed, b"gzip") == b"hello"
    assert framing.unary(framing.frame(b"plain"), b"gzip") == b"plain"  # the flag decides, per message
    with pytest.raises(framing.FramingError) as caught:
        framing.unary(packed, b"snappy")
    assert caught.value.status == GrpcStatus.UNIMPLEMENTED
    with pytest.raises(framing.FramingError) as caught:
        framing.unary(framing.frame(b"not gzip", compressed=True), b"gzip")
    assert caught.value.status == GrpcStatus.INTERNAL
    with pytest.raises(framing.FramingError) as caught:
        framing.unary(framing.frame(gzip.compress(b"abc")[:-3], compressed=True), b"gzip")
    assert caught.value.status == GrpcStatus.INTERNAL and "truncated" in caught.value.message


def test_a_gzip_bomb_costs_no_memory():
    bomb = framing.frame(gzip.compress(b"\0" * 10_000_000), compressed=True)  # ~10 KB that inflate to 10 MB
    with pytest.raises(framing.FramingError) as caught:
        framing.unary(bomb, b"gzip", max_size=1 << 20)
    assert caught.value.status == GrpcStatus.RESOURCE_EXHAUSTED


@pytest.mark.parametrize(("text", "seconds"), [
    (b"100m", 0.1), (b"5S", 5.0), (b"1H", 3600.0), (b"2M", 120.0), (b"250u", 0.00025), (b"7n", 7e-9),
    (b"99999999S", 99999999.0), (b"0m", 0.0), (b" 3S ", 3.0),
])
def test_timeout_parse(text, seconds):
    assert timeout.parse(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", [b"", b"S", b"100", b"100x", b"123456789S", b"-1S", b"1.5S", b"\xd9\xa1S",
                                  b"1 S"])
def test_timeout_parse_refuses(text):
    with pytest.raises(ValueError, match="grpc-timeout"):
        timeout.parse(text)


@pytest.mark.parametrize(("seconds", "text"), [
    (0.1, b"100000u"), (5.0, b"5000000u"), (0.0, b"0n"), (-1.0, b"0n"),
    (1e-9, b"1n"), (1000.0, b"1000000m"), (200_000.0, b"200000S"), (1e9, b"16666667M"), (1e12, b"99999999H"),
])
def test_timeout_format(seconds, text):
    assert timeout.format(seconds) == text
    if seconds > 0 and seconds < 1e11:
        assert timeout.parse(text) >= seconds - 1e-12  # never a shorter budget


def test_check_unary_agrees_with_unary():
    for body in (framing.frame(b"abc"), b"", framing.frame(b"a") + framing.frame(b"b"), b"\x00\x00\x00\x00\x09abc",
                 framing.frame(b"x" * 11)):
        try:
            framing.unary(body, max_size=10)
        except framing.FramingError as exc:
            with pytest.raises(framing.FramingError) as caught:
                framing.check_unary(body, max_size=10)
            assert caught.value.status == exc.status
        else:
            assert framing.check_unary(body, max_size=10) is None
