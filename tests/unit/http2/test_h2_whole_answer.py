"""The whole answer and the whole request written below h2 (http2/whole_answer.py, whole_request.py): the bytes
are the frames h2's own calls write, h2's state moves as with them (the stream closed or half-closed, both
windows shrunk, a frame the peer sends afterwards refused as before), a header block beyond a frame goes on in
CONTINUATION frames, and whatever is unusual is left to h2 with nothing changed."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import pytest
from h2.stream import StreamState
from hypothesis import given, settings
from hypothesis import strategies as st

from meshbatch.http2.client_setup import new_client_connection
from meshbatch.http2.client_stream import StreamLimits
from meshbatch.http2.connection import new_connection
from meshbatch.http2.limits import H2Limits
from meshbatch.http2.whole_answer import DATA, frame, send_whole
from meshbatch.http2.whole_request import send_request

REQUEST = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"svc")]
FIELDS = [(b":status", b"200"), (b"content-type", b"text/plain"), (b"content-length", b"2")]


def client() -> h2.connection.H2Connection:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    return conn


def server_with_request(end: bool = True, data: bytes = b"") -> tuple[h2.connection.H2Connection,
                                                                        h2.connection.H2Connection]:
    peer, server = client(), new_connection(H2Limits())
    peer.send_headers(1, REQUEST, end_stream=end and not data)
    if data:
        peer.send_data(1, data, end_stream=end)
    server.receive_data(peer.data_to_send())
    server.data_to_send()  # (its SETTINGS and acknowledgements)
    peer.receive_data(server.data_to_send())
    return peer, server


def same_as_h2s_own(ours: h2.connection.H2Connection, theirs: h2.connection.H2Connection,
                    fields: list[tuple[bytes, bytes]], body: bytes, trailers: list[tuple[bytes, bytes]] | None) -> None:
    """`theirs` sends the same answer through h2's own calls: the bytes, the stream's state and the windows match."""
    theirs.send_headers(1, fields, end_stream=not body and not trailers)
    if body:
        theirs.send_data(1, body, end_stream=not trailers)
    if trailers:
        theirs.send_headers(1, trailers, end_stream=True)
    assert ours.data_to_send() == theirs.data_to_send()
    assert ours.streams[1].state_machine.state == theirs.streams[1].state_machine.state == StreamState.CLOSED
    assert ours.outbound_flow_control_window == theirs.outbound_flow_control_window
    assert ours.streams[1].outbound_flow_control_window == theirs.streams[1].outbound_flow_control_window


GRPC = [(b":status", b"200"), (b"content-type", b"application/grpc")]
STATUS = [(b"grpc-status", b"0"), (b"x-trail", b"t")]


@pytest.mark.parametrize(("fields", "body", "trailers"), [
    (FIELDS, b"ok", None), ([(b":status", b"204")], b"", None),
    ([(b":status", b"200"), (b"x-big", b"v" * 40_000)], b"big head", None),
    (GRPC, b"\x00\x00\x00\x00\x02hi", STATUS),  # a gRPC answer: its status in trailers
    (GRPC, b"", [(b"grpc-status", b"5"), (b"x-big", b"v" * 40_000)]),  # trailers beyond a frame
])
def test_the_bytes_and_the_state_are_h2s_own(fields: list[tuple[bytes, bytes]], body: bytes,
                                             trailers: list[tuple[bytes, bytes]] | None) -> None:
    _, ours = server_with_request()
    _, theirs = server_with_request()
    assert send_whole(ours, 1, fields, body, trailers)
    same_as_h2s_own(ours, theirs, fields, body, trailers)


def test_the_client_reads_the_answer_and_a_frame_after_it_is_refused_as_after_h2s_own() -> None:
    peer, ours = server_with_request()
    _, theirs = server_with_request()
    assert send_whole(ours, 1, FIELDS, b"ok")
    theirs.send_headers(1, FIELDS)
    theirs.send_data(1, b"ok", end_stream=True)
    events = peer.receive_data(ours.data_to_send())
    theirs.data_to_send()
    assert [type(e) for e in events][:3] == [h2.events.ResponseReceived, h2.events.DataReceived,
                                             h2.events.StreamEnded]
    late = frame(DATA, 0, 1, b"late")  # (a hostile client: DATA on a stream it ended)
    outcomes = []
    for server in (ours, theirs):
        try:
            server.receive_data(late)
            outcomes.append(server.data_to_send())
        except h2.exceptions.ProtocolError as error:
            outcomes.append(type(error).__name__.encode())
    assert outcomes[0] == outcomes[1] and outcomes[0]  # refused (reset or an error), the same way


@pytest.mark.parametrize("case", ["request still arriving", "body beyond a frame", "body beyond the window",
                                  "answered already", "no such stream"])
def test_what_is_unusual_is_left_to_h2_with_nothing_changed(case: str) -> None:
    _, server = server_with_request(end=case != "request still arriving")
    body = b"ok"
    if case == "body beyond a frame":
        body = b"x" * (server.max_outbound_frame_size + 1)
    elif case == "body beyond the window":
        server.outbound_flow_control_window = 1
    elif case == "answered already":
        server.send_headers(1, FIELDS)
    sid = 3 if case == "no such stream" else 1
    before = (bytes(server._data_to_send), server.outbound_flow_control_window)
    assert not send_whole(server, sid, FIELDS, body)
    assert (bytes(server._data_to_send), server.outbound_flow_control_window) == before


# the upstream connection's side: a whole request (http2/whole_request.py) ------------------------------------
def upstream_client() -> h2.connection.H2Connection:
    conn = new_client_connection(StreamLimits())
    conn.send_headers(1, REQUEST, end_stream=True)  # (the first request opens the connection: h2's own way)
    conn.data_to_send()
    return conn


@pytest.mark.parametrize(("fields", "body"), [
    (REQUEST, b""), ([(b":method", b"POST"), *REQUEST[1:], (b"content-type", b"application/grpc")], b"\x00" * 5),
    ([(b":method", b"HEAD"), *REQUEST[1:], (b"x-big", b"v" * 40_000)], b""),
])
def test_a_whole_request_is_h2s_own_bytes_and_state(fields: list[tuple[bytes, bytes]], body: bytes) -> None:
    ours, theirs = upstream_client(), upstream_client()
    assert send_request(ours, 3, fields, body)
    theirs.send_headers(3, fields, end_stream=not body)
    if body:
        theirs.send_data(3, body, end_stream=True)
    assert ours.data_to_send() == theirs.data_to_send()
    mine, other = ours.streams[3], theirs.streams[3]
    assert mine.state_machine.state == other.state_machine.state == StreamState.HALF_CLOSED_LOCAL
    assert (mine.request_method, mine._authority) == (other.request_method, other._authority) == (fields[0][1],
                                                                                                  b"svc")
    assert ours.outbound_flow_control_window == theirs.outbound_flow_control_window
    assert mine.outbound_flow_control_window == other.outbound_flow_control_window
    assert ours.highest_outbound_stream_id == theirs.highest_outbound_stream_id == 3


@pytest.mark.parametrize("case", ["connection not open", "stream exists", "body beyond a frame"])
def test_what_is_unusual_in_a_request_is_left_to_h2(case: str) -> None:
    conn = new_client_connection(StreamLimits()) if case == "connection not open" else upstream_client()
    sid = 1 if case == "stream exists" else 3
    body = b"x" * (conn.max_outbound_frame_size + 1) if case == "body beyond a frame" else b""
    before = (bytes(conn._data_to_send), dict(conn.streams))
    assert not send_request(conn, sid, REQUEST, body)
    assert (bytes(conn._data_to_send), dict(conn.streams)) == before


NAMES = st.sampled_from([b"content-type", b"x-a", b"grpc-status", b"x-long", b"set-cookie"])
VALUES = st.sampled_from([b"", b"1", b"application/grpc", b"v" * 300, b"w" * 6_000])  # (several: beyond a frame)
FIELDS_ = st.lists(st.tuples(NAMES, VALUES), max_size=5)


@settings(max_examples=60, deadline=None)
@given(FIELDS_, st.integers(0, 40_000), st.one_of(st.none(), FIELDS_.filter(bool)), st.booleans())
def test_any_answer_is_h2s_own_bytes_or_left_to_h2_untouched(fields: list[tuple[bytes, bytes]], size: int,
                                                             trailers: list[tuple[bytes, bytes]] | None,
                                                             small_window: bool) -> None:
    head = [(b":status", b"200"), *fields]
    body = b"b" * size
    _, ours = server_with_request()
    _, theirs = server_with_request()
    if small_window:
        ours.outbound_flow_control_window = theirs.outbound_flow_control_window = 1_000
    before = bytes(ours._data_to_send)
    if not send_whole(ours, 1, head, body, trailers):
        assert bytes(ours._data_to_send) == before and ours.streams[1].state_machine.state == \
            StreamState.HALF_CLOSED_REMOTE
        return
    same_as_h2s_own(ours, theirs, head, body, trailers)
