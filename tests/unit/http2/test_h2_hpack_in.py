"""The decoder that remembers repeated header blocks: it decodes every sequence of blocks exactly as hpack's own
decoder does (whatever the blocks insert, evict or resize), answers a repeat without decoding it, forgets all on
any change to the table or the limits, and holds a bounded amount whatever a peer sends."""

from __future__ import annotations

import h2.exceptions
import pytest
from hpack import Decoder, Encoder, HeaderTuple, NeverIndexedHeaderTuple
from hpack.exceptions import InvalidTableSizeError, OversizedHeaderListError
from hypothesis import given, settings
from hypothesis import strategies as st

from meshbatch.http2 import frames_in, hpack_in
from meshbatch.http2.hpack_in import RepeatDecoder

REQUEST = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"svc"),
           (b"user-agent", b"h2load nghttp2/1.52.0")]


def test_a_repeated_block_is_answered_from_memory() -> None:
    encoder, decoder = Encoder(), RepeatDecoder()
    first = encoder.encode(REQUEST)  # inserts into the table: not kept
    again = encoder.encode(REQUEST)  # indexed fields only: kept
    assert decoder.decode(first, raw=True) == REQUEST
    assert decoder.decode(again, raw=True) == REQUEST and again in decoder._kept
    decoder._kept[again][0] = HeaderTuple(b":method", b"POST")  # (proof that the next answer comes from memory)
    assert decoder.decode(again, raw=True)[0] == (b":method", b"POST")


def test_the_frame_reader_answers_a_repeat_from_memory_too() -> None:
    """frames_in's `_fields` takes a kept block straight from the decoder's memory, and only while what was kept
    still holds (the table and the limits unchanged); anything else goes through `decode`."""
    encoder, decoder = Encoder(), RepeatDecoder()
    first, again = encoder.encode(REQUEST), encoder.encode(REQUEST)
    assert frames_in._fields(decoder, first) == REQUEST
    assert frames_in._fields(decoder, again) == REQUEST and again in decoder._kept
    decoder._kept[again][0] = HeaderTuple(b":method", b"POST")  # (proof that the answer comes from memory)
    answer = frames_in._fields(decoder, again)
    assert answer[0] == (b":method", b"POST") and answer is not decoder._kept[again]  # (a copy: the caller's)
    decoder.max_header_list_size = 10  # a limit changed: decoded afresh, and refused
    with pytest.raises(h2.exceptions.DenialOfServiceError):
        frames_in._fields(decoder, again)
    decoder.max_header_list_size = 65_536
    indexed = encoder.encode([(b"x-a", b"1")])
    assert frames_in._fields(decoder, indexed) == [(b"x-a", b"1")]  # (inserted: not kept)
    indexed = encoder.encode([(b"x-a", b"1")])
    assert frames_in._fields(decoder, indexed) == [(b"x-a", b"1")] and indexed in decoder._kept
    frames_in._fields(decoder, encoder.encode([(b"x-b", b"2")]))  # now the newest entry is x-b
    assert frames_in._fields(decoder, indexed) == [(b"x-b", b"2")]
    with pytest.raises(h2.exceptions.ProtocolError):
        frames_in._fields(decoder, b"\xff\xff\xff\xff\x0f")  # (an index far beyond the table)


def test_a_change_to_the_table_forgets_what_was_kept() -> None:
    encoder, decoder = Encoder(), RepeatDecoder()
    decoder.decode(encoder.encode([(b"x-a", b"1")]), raw=True)
    indexed = encoder.encode([(b"x-a", b"1")])  # index 62: the newest entry
    assert decoder.decode(indexed, raw=True) == [(b"x-a", b"1")]
    decoder.decode(encoder.encode([(b"x-b", b"2")]), raw=True)  # now 62 is x-b
    assert decoder.decode(indexed, raw=True) == [(b"x-b", b"2")]
    decoder.header_table_size = 0  # (a SETTINGS change): the table is empty, index 62 is invalid
    with pytest.raises(Exception, match="Invalid table index"):
        decoder.decode(indexed, raw=True)


def test_blocks_of_a_peer_whose_table_holds_nothing_are_kept() -> None:
    # nginx's answers: a table size of 0 first, then fields "indexed" into a table that keeps none of them
    encoder, decoder = Encoder(), RepeatDecoder()
    encoder.header_table_size = 0
    decoder.decode(encoder.encode([(b":status", b"200")]), raw=True)
    block = encoder.encode([(b":status", b"200"), (b"server", b"nginx"), (b"content-type", b"application/grpc")])
    assert block[1] & 0xC0 == 0x40  # (a literal with incremental indexing)
    for _ in range(2):
        assert decoder.decode(block, raw=True)[1] == (b"server", b"nginx")
    assert block in decoder._kept and not decoder.header_table.dynamic_entries


def test_the_limits_still_hold_for_a_repeat() -> None:
    encoder, decoder = Encoder(), RepeatDecoder()
    decoder.decode(encoder.encode([(b"x-big", b"v" * 300)]), raw=True)
    block = encoder.encode([(b"x-big", b"v" * 300)])
    assert decoder.decode(block, raw=True)
    decoder.max_header_list_size = 100
    with pytest.raises(OversizedHeaderListError):
        decoder.decode(block, raw=True)
    decoder.max_header_list_size = 65_536
    decoder.max_allowed_table_size = 100  # smaller than the table now is: the peer must shrink it first
    with pytest.raises(InvalidTableSizeError):
        decoder.decode(block, raw=True)


def test_what_is_kept_is_bounded() -> None:
    decoder = RepeatDecoder()
    for i in range(1000):  # literals without indexing: each block is kept, none twice
        decoder.decode(Encoder().encode([NeverIndexedHeaderTuple(b"x-n", b"%d" % i)]), raw=True)
        assert len(decoder._kept) <= hpack_in.MAX_KEPT
    big = Encoder().encode([NeverIndexedHeaderTuple(b"x-big", b"v" * hpack_in.MAX_BLOCK)], huffman=False)
    many = b"\x82" * (hpack_in.MAX_FIELDS + 1)  # :method GET, again and again
    decoder.decode(big, raw=True)
    decoder.decode(many, raw=True)
    assert big not in decoder._kept and many not in decoder._kept


FIELDS = st.lists(st.tuples(st.sampled_from([b"x-a", b"x-b", b":path", b"cookie", b"user-agent"]),
                            st.sampled_from([b"", b"1", b"/", b"v" * 40, b"v" * 1500])), max_size=6)
STEPS = st.lists(st.one_of(st.tuples(st.just("block"), FIELDS, st.booleans()),
                           st.tuples(st.just("size"), st.sampled_from([0, 64, 256, 4096]), st.just(False))),
                 max_size=30)


@settings(max_examples=60, deadline=None)
@given(STEPS)
def test_every_sequence_decodes_as_hpacks_own_decoder_does(steps: list[tuple[str, object, bool]]) -> None:
    encoder, plain, ours, read = Encoder(), Decoder(), RepeatDecoder(), RepeatDecoder()
    for kind, what, huffman in steps:
        if kind == "size":
            if what != encoder.header_table_size:  # (hpack's encoder forgets a change set twice)
                encoder.header_table_size = what  # signalled at the start of the next block
            continue
        assert isinstance(what, list)
        for _ in range(2):  # (every block encoded is decoded: the encoder's table stays the decoders' table)
            block = encoder.encode(what, huffman=huffman)
            expected = plain.decode(block, raw=True)
            assert ours.decode(block, raw=True) == expected
            assert frames_in._fields(read, block) == expected  # (the frame reader's way to the same decoder)
        assert list(ours.header_table.dynamic_entries) == list(plain.header_table.dynamic_entries)
        assert list(read.header_table.dynamic_entries) == list(plain.header_table.dynamic_entries)
