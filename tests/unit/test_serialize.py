"""Bytes on the wire: hop-by-hop stripping, response and request encoding, local replies, proxy headers."""

from __future__ import annotations

import json

import pytest

from meshbatch.errors import BadRequest, GatewayTimeout, NoRoute, Overloaded
from meshbatch.http.message import Request, Response
from meshbatch.http.serialize import (
    HOP_BY_HOP,
    connection_tokens,
    encode_request,
    encode_response,
    end_to_end,
    local_reply,
    status_line,
)
from meshbatch.upstream.headers import request_headers as upstream_headers
from meshbatch.upstream.headers import response_headers as downstream_headers

ALL_HOP_BY_HOP = [
    (b"connection", b"keep-alive"),
    (b"keep-alive", b"timeout=5"),
    (b"proxy-connection", b"keep-alive"),
    (b"proxy-authenticate", b"Basic"),
    (b"proxy-authorization", b"Basic Zm9vOmJhcg=="),
    (b"te", b"trailers"),
    (b"trailer", b"x-checksum"),
    (b"transfer-encoding", b"chunked"),
    (b"upgrade", b"h2c"),
]


def test_hop_by_hop_set_is_the_rfc_list() -> None:
    assert {name for name, _ in ALL_HOP_BY_HOP} <= HOP_BY_HOP


def test_end_to_end_drops_every_hop_by_hop_header() -> None:
    headers = [(b"x-a", b"1"), *ALL_HOP_BY_HOP, (b"x-b", b"2"), (b"x-a", b"3")]
    assert end_to_end(headers) == [(b"x-a", b"1"), (b"x-b", b"2"), (b"x-a", b"3")]


@pytest.mark.parametrize(
    "connection",
    [b"x-private", b"keep-alive, x-private", b"X-Private , close", b"x-other,x-private", b"Upgrade, X-PRIVATE"],
)
def test_end_to_end_drops_headers_named_in_connection(connection: bytes) -> None:
    headers = [(b"x-private", b"secret"), (b"connection", connection), (b"x-public", b"ok"), (b"x-other", b"o")]
    kept = end_to_end(headers)
    assert (b"x-private", b"secret") not in kept
    assert (b"x-public", b"ok") in kept
    assert all(name != b"connection" for name, _ in kept)


def test_connection_tokens() -> None:
    tokens = connection_tokens([(b"connection", b"Keep-Alive, X-A"), (b"connection", b" x-b ,close")])
    assert tokens == {b"keep-alive", b"x-a", b"x-b", b"close"}
    assert connection_tokens([(b"x", b"y")]) == frozenset()


def test_status_line() -> None:
    assert status_line(200) == b"HTTP/1.1 200 OK\r\n"
    assert status_line(404) == b"HTTP/1.1 404 Not Found\r\n"
    assert status_line(599) == b"HTTP/1.1 599 Unknown\r\n"


def test_encode_response_keep_alive() -> None:
    response = Response(200, [(b"content-type", b"text/plain"), (b"x-a", b"1")], b"hello")
    assert encode_response(response, keep_alive=True) == (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-a: 1\r\ncontent-length: 5\r\n\r\nhello"
    )


def test_encode_response_close_and_request_id() -> None:
    data = encode_response(Response(201, [], b"{}"), keep_alive=False, request_id=b"r1")
    assert data == (b"HTTP/1.1 201 Created\r\nx-request-id: r1\r\ncontent-length: 2\r\n"
                    b"connection: close\r\n\r\n{}")


def test_encode_response_to_head_has_no_body() -> None:
    data = encode_response(Response(404, [], b"nope"), keep_alive=True, head=True)
    assert data == b"HTTP/1.1 404 Not Found\r\ncontent-length: 4\r\n\r\n"


def test_upstream_answer_to_head_claims_no_length() -> None:
    # The upstream's HEAD answer comes without a body: "content-length: 0" would be a wrong claim.
    data = encode_response(Response(200, [(b"x-a", b"1")], b""), keep_alive=True, head=True)
    assert data == b"HTTP/1.1 200 OK\r\nx-a: 1\r\n\r\n"


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses(status: int) -> None:
    data = encode_response(Response(status, [(b"etag", b'"x"')], b"ignored"), keep_alive=True)
    assert data == status_line(status) + b'etag: "x"\r\n\r\n'


def test_encode_request() -> None:
    assert encode_request(b"GET", b"/a?b", [(b"host", b"h")], b"") == b"GET /a?b HTTP/1.1\r\nhost: h\r\n\r\n"
    assert encode_request(b"POST", b"/", [(b"host", b"h")], b"") == (
        b"POST / HTTP/1.1\r\nhost: h\r\ncontent-length: 0\r\n\r\n"
    )
    assert encode_request(b"PUT", b"/", [], b"abc") == b"PUT / HTTP/1.1\r\ncontent-length: 3\r\n\r\nabc"
    assert encode_request(b"DELETE", b"/", [], b"") == b"DELETE / HTTP/1.1\r\n\r\n"


def test_local_reply_is_small_json() -> None:
    response = local_reply(NoRoute("no_route"))
    assert response.status == 404
    assert (b"content-type", b"application/json") in response.headers
    assert json.loads(response.body) == {"error": "not found", "reason": "no_route"}
    assert (response.flag, response.reason) == ("NR", "no_route")


def test_local_reply_carries_detail() -> None:
    body = json.loads(local_reply(BadRequest("duplicate_host", "more than one Host header")).body)
    assert body == {"error": "bad request", "reason": "duplicate_host", "detail": "more than one Host header"}
    assert json.loads(local_reply(GatewayTimeout()).body)["reason"] == "upstream_timeout"


@pytest.mark.parametrize(("seconds", "header"), [(0.2, b"1"), (1.0, b"1"), (2.6, b"3"), (30, b"30")])
def test_overloaded_has_retry_after(seconds: float, header: bytes) -> None:
    response = local_reply(Overloaded("queue_full", retry_after=seconds))
    assert response.status == 429
    assert (b"retry-after", header) in response.headers


# the proxy's own request and response headers ------------------------------------------------------
@pytest.mark.parametrize(("te", "kept"), [(b"trailers", True), (b"Trailers, deflate", True), (b"gzip", False)])
def test_te_is_passed_on_only_as_te_trailers(te: bytes, kept: bool) -> None:
    headers = upstream_headers(make_request([(b"host", b"svc"), (b"te", te)]))
    assert [value for name, value in headers if name == b"te"] == ([b"trailers"] if kept else [])


def make_request(headers: list[tuple[bytes, bytes]], client: str = "10.1.2.3") -> Request:
    return Request(b"GET", b"/", headers, client=client, scheme=b"http", request_id=b"rid")


def test_upstream_headers_strip_hop_by_hop_and_add_forwarding() -> None:
    request = make_request([
        (b"host", b"svc"), *ALL_HOP_BY_HOP, (b"connection", b"x-secret"), (b"x-secret", b"1"),
        (b"x-request-id", b"rid"), (b"accept", b"*/*"),
    ])
    headers = upstream_headers(request)
    names = [name for name, _ in headers]
    assert not set(names) & (HOP_BY_HOP - {b"te"} | {b"x-secret"})
    assert headers[:3] == [(b"host", b"svc"), (b"x-request-id", b"rid"), (b"accept", b"*/*")]
    assert (b"te", b"trailers") in headers  # the one hop-by-hop field passed on: the caller takes trailers
    assert dict(headers)[b"x-forwarded-for"] == b"10.1.2.3"
    assert dict(headers)[b"x-forwarded-proto"] == b"http"
    assert dict(headers)[b"via"] == b"1.1 meshbatch"


def test_upstream_headers_append_to_forwarded_for_and_via() -> None:
    request = make_request([
        (b"x-forwarded-for", b"1.1.1.1"), (b"x-forwarded-for", b"2.2.2.2"), (b"via", b"1.0 edge"),
        (b"x-forwarded-proto", b"https"),
    ])
    headers = upstream_headers(request)
    assert [v for k, v in headers if k == b"x-forwarded-for"] == [b"1.1.1.1, 2.2.2.2, 10.1.2.3"]
    assert [v for k, v in headers if k == b"via"] == [b"1.0 edge, 1.1 meshbatch"]
    # An x-forwarded-proto still on the request came through trusted hops (the parser drops a client's own:
    # tests/unit/test_parser.py): it is passed on, not replaced by this hop's scheme.
    assert [v for k, v in headers if k == b"x-forwarded-proto"] == [b"https"]


def test_upstream_headers_append_the_peer_not_the_client_address() -> None:
    # With trusted hops the client address comes from x-forwarded-for; the hop appended is still the TCP peer.
    request = Request(b"GET", b"/", [(b"x-forwarded-for", b"203.0.113.9, 10.0.0.7")], client="203.0.113.9",
                      peer="10.0.0.7")
    headers = upstream_headers(request)
    assert [v for k, v in headers if k == b"x-forwarded-for"] == [b"203.0.113.9, 10.0.0.7, 10.0.0.7"]
    assert [v for k, v in headers if k == b"x-forwarded-proto"] == [b"http"]


def test_upstream_headers_without_via() -> None:
    assert all(name != b"via" for name, _ in upstream_headers(make_request([]), via=False))


def test_downstream_headers_add_via() -> None:
    response = Response(200, [(b"x-a", b"1")], b"")
    assert downstream_headers(response) == [(b"x-a", b"1"), (b"via", b"1.1 meshbatch")]
    assert downstream_headers(Response(200, [(b"x-a", b"1")]), via=False) == [(b"x-a", b"1")]
