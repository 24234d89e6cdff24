"""The answers' HPACK encoder: what any decoder reads back is what was sent, with no dynamic-table entry ever
made, never-indexed fields kept never-indexed, the peer's table-size changes signalled, and the same bytes for the
same field however often it is sent. And the server writes all the answers of one read in one write."""

from __future__ import annotations

import pytest
from hpack import Decoder, Encoder, HeaderTuple, NeverIndexedHeaderTuple
from hypothesis import given, settings
from hypothesis import strategies as st

from meshbatch.http.message import Request, Response
from meshbatch.http.serving import Answer, Pending
from meshbatch.http2 import hpack_fields
from meshbatch.http2.connection import new_connection
from meshbatch.http2.hpack_out import StaticEncoder, encode_field
from meshbatch.http2.limits import H2Limits
from meshbatch.http2.response import decimal
from meshbatch.http2.whole_answer import encoded
from meshbatch.telemetry.build import is_compiled
from testbed.h2peer import H2Pair, request_headers

ANSWER = [(b":status", b"200"), (b"content-type", b"text/plain"), (b"server", b"envoy"),
          NeverIndexedHeaderTuple(b"x-request-id", b"4bf92f35-77b3-4da6"), (b"content-length", b"2"),
          (b"x-custom", b"Some Value")]


def test_answers_decode_to_what_was_sent_and_leave_the_table_empty() -> None:
    encoder, decoder = StaticEncoder(), Decoder()
    blocks = [encoder.encode(ANSWER) for _ in range(3)]
    for block in blocks:
        assert decoder.decode(block, raw=True) == ANSWER
        assert len(decoder.header_table.dynamic_entries) == 0
    assert blocks[0] == blocks[1] == blocks[2]
    assert blocks[0][:1] == b"\x88"  # :status 200 is the static table's entry 8


def test_a_never_indexed_field_stays_never_indexed() -> None:
    block = StaticEncoder().encode([(b"authorization", b"secret", True), NeverIndexedHeaderTuple(b"x-a", b"b")])
    decoded = Decoder().decode(block, raw=True)
    assert all(isinstance(field, NeverIndexedHeaderTuple) for field in decoded)
    assert [tuple(field) for field in decoded] == [(b"authorization", b"secret"), (b"x-a", b"b")]
    assert block[0] & 0xF0 == 0x10  # RFC 7541 6.2.3


def test_a_field_encoded_before_as_plain_is_still_never_indexed_when_marked() -> None:
    """A never-indexed field equals the plain one as a tuple: the kept plain encoding is not handed to it."""
    encoder = StaticEncoder()
    plain = encoder.encode([(b"authorization", b"secret")])
    assert encoder.encode([(b"authorization", b"secret")]) == plain
    for marked in (NeverIndexedHeaderTuple(b"authorization", b"secret"), (b"authorization", b"secret", True)):
        decoded = Decoder().decode(encoder.encode([marked]), raw=True)
        assert [type(field) for field in decoded] == [NeverIndexedHeaderTuple]
    assert Decoder().decode(encoder.encode([("authorization", "secret")]), raw=True) == [(b"authorization",
                                                                                         b"secret")]


def test_never_indexed_makes_hpacks_own_marked_field() -> None:
    made, theirs = hpack_fields.never_indexed(b"x-request-id", b"7"), NeverIndexedHeaderTuple(b"x-request-id", b"7")
    assert type(made) is NeverIndexedHeaderTuple and made == theirs and not made.indexable
    assert StaticEncoder().encode([made]) == StaticEncoder().encode([theirs])


def test_a_repeated_field_object_and_an_equal_one_encode_alike() -> None:
    """A plain pair is kept under itself: the same tuple again, an equal one, and one whose value differs."""
    encoder = StaticEncoder()
    field = (b"x-a", b"10")
    first = encoder.encode([field, (b":status", b"200")])
    assert encoder.encode([field, (b":status", b"200")]) == first
    equal = (bytes(bytearray(b"x-a")), bytes(bytearray(b"10")))  # (other objects, equal)
    assert encoder.encode([equal, (b":status", b"200")]) == first
    decoded = HeaderTuple(*equal)  # (what hpack's decoder gives)
    assert encoder.encode([decoded, (b":status", b"200")]) == encoder.encode([decoded, (b":status", b"200")]) == first
    assert StaticEncoder().encode([decoded]) == StaticEncoder().encode([field])
    assert Decoder().decode(encoder.encode([(b"x-a", b"2")]), raw=True) == [(b"x-a", b"2")]


def test_the_frame_writers_encode_as_the_connections_encoder_does() -> None:
    """`whole_answer.encoded` asks the proxy's encoder straight; a table-size change to signal, or another
    encoder, goes through `encode` as before."""
    ours, theirs = new_connection(H2Limits()), new_connection(H2Limits())
    fields = [(b":status", b"200"), (b"x-a", b"1")]
    for _ in range(2):
        assert encoded(ours, fields) == theirs.encoder.encode(fields)
    for conn in (ours, theirs):
        conn.encoder.header_table_size = 256
    assert encoded(ours, fields) == theirs.encoder.encode(fields) != encoded(ours, fields)  # (signalled once)
    ours.encoder = Encoder()
    assert encoded(ours, fields) == Encoder().encode(fields)


def test_the_peers_table_size_changes_are_signalled_once_at_the_next_block() -> None:
    encoder, decoder = StaticEncoder(), Decoder()
    encoder.header_table_size = 0
    encoder.header_table_size = 1024
    block = encoder.encode([(b":status", b"204")])
    assert block[:1] == b"\x20"  # the smallest size first (0), then the current one
    assert decoder.decode(block, raw=True) == [(b":status", b"204")]
    assert decoder.header_table_size == 1024
    assert encoder.encode([(b":status", b"204")]) == b"\x89"


def test_text_fields_and_dicts_are_encoded_as_their_utf8_bytes() -> None:
    block = StaticEncoder().encode({":status": "200", "x-name": "välue"})
    assert Decoder().decode(block, raw=True) == [(b":status", b"200"), (b"x-name", "välue".encode())]


@pytest.mark.skipif(is_compiled(hpack_fields.__file__), reason="a compiled module's constant cannot be patched")
def test_the_kept_encodings_start_over_when_full(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hpack_fields, "MAX_KEPT", 2)
    encoder, decoder = StaticEncoder(), Decoder()
    fields = [(b"x-n", b"%d" % i) for i in range(5)]
    assert decoder.decode(encoder.encode(fields), raw=True) == fields
    assert len(encoder._kept) <= 2


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([b":status", b"content-type", b"server", b"x-a", b"cache-control",
                                           b"set-cookie", b"x-request-id"]),
                          st.binary(max_size=40)), max_size=12),
       st.lists(st.booleans(), min_size=12, max_size=12))
def test_any_fields_round_trip(fields: list[tuple[bytes, bytes]], never: list[bool]) -> None:
    sent = [NeverIndexedHeaderTuple(n, v) if never[i] else (n, v) for i, (n, v) in enumerate(fields)]
    encoder, decoder = StaticEncoder(), Decoder()
    for _ in range(2):
        decoded = decoder.decode(encoder.encode(sent), raw=True)
        assert [tuple(f) for f in decoded] == [tuple(f) for f in sent]
        assert [isinstance(f, NeverIndexedHeaderTuple) for f in decoded] == never[:len(sent)]
    assert encode_field(b"server", b"x", False) == encode_field(b"server", b"x", False)


def _echo(request: Request, answer: Answer) -> Pending | None:
    answer(Response(200, [(b"content-type", b"text/plain")], b"ok"))
    return None


async def test_the_answers_of_one_read_go_out_in_one_write() -> None:
    peer = H2Pair(_echo)
    peer.flush()
    before = len(peer.transport.written)
    sids = []
    for path in ("/a", "/b", "/c", "/d"):
        sid = peer.client.get_next_available_stream_id()
        peer.client.send_headers(sid, request_headers(path), end_stream=True)
        sids.append(sid)
    peer.raw(peer.client.data_to_send())
    assert len(peer.transport.written) == before + 1
    peer.pull()
    assert all(peer.answers.status[sid] == 200 and peer.answers.body[sid] == b"ok" for sid in sids)
    assert all(sid in peer.answers.ended for sid in sids)


def test_decimal_is_the_numbers_text_and_the_same_object_for_small_ones() -> None:
    for n in (0, 7, 200, 1023, 1024, 65_536, 10**12):
        assert decimal(n) == b"%d" % n
    assert decimal(200) is decimal(200) and decimal(-1) == b"-1"
