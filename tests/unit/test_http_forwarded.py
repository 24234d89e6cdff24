"""The trusted client address (http/forwarded.py): Envoy's xff_num_trusted_hops, counted from the right."""

from __future__ import annotations

import pytest

from meshbatch.http.forwarded import Trust, client_address

PEER = "10.0.0.9"


@pytest.mark.parametrize(("xff", "hops", "client"), [
    ([b"1.1.1.1, 2.2.2.2"], 0, PEER),  # nothing in a header is believed without trusted hops
    ([b"1.1.1.1, 2.2.2.2"], 1, "2.2.2.2"),  # the one proxy in front appended the address it saw
    ([b"1.1.1.1, 2.2.2.2"], 2, "1.1.1.1"),
    ([b"1.1.1.1", b"2.2.2.2,3.3.3.3"], 2, "2.2.2.2"),  # several lines: one list, in order
    ([b"1.1.1.1"], 2, PEER),  # fewer entries than trusted hops: the peer
    ([b"spoofed, not-an-ip"], 1, PEER),  # not an address: the peer
    ([b"1.1.1.1, 2001:DB8::1 "], 1, "2001:db8::1"),  # in canonical text form
    ([b"1.1.1.1, 2.2.2.2:5000"], 1, PEER),  # ports are not part of X-Forwarded-For
    ([], 1, PEER),
])
def test_client_address(xff: list[bytes], hops: int, client: str) -> None:
    assert client_address(xff, hops, PEER) == client


def test_edge_defaults() -> None:
    edge = Trust(edge=True)
    assert edge.replace_forwarded and edge.drop_request_id and edge.drop_trace
    assert not Trust(edge=True, xff_num_trusted_hops=1).replace_forwarded  # the hop in front set them
    kept = Trust(edge=True, preserve_external_request_id=True, preserve_external_trace=True)
    assert not kept.drop_request_id and not kept.drop_trace
    inner = Trust()
    assert not inner.replace_forwarded and not inner.drop_request_id and not inner.drop_trace
