"""The TLS objects of meshbatch's contexts: the C object's record methods bound per connection (no ssl.py frame
per record), with the standard behaviour: handshake, peer identity, records both ways, the loops' calls."""

from __future__ import annotations

import asyncio
import ssl
import types

import pytest
import uvloop
from tls_pairs import memory_pair

from meshbatch.config.model.security import Identity
from meshbatch.security.ca import init_ca, issue
from meshbatch.security.sslobject import FastSSLObject
from meshbatch.security.tls import CertSource, verify_peer

TD = "example.org"


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> tuple[CertSource, CertSource]:
    root = tmp_path_factory.mktemp("pki")
    init_ca(root / "ca", TD)
    made = []
    for name in ("server", "client"):
        cert, key = root / f"{name}.crt", root / f"{name}.key"
        issue(root / "ca", f"spiffe://{TD}/ns/a/sa/{name}", cert, key)
        made.append(CertSource(Identity(cert=str(cert), key=str(key), ca=str(root / "ca" / "ca.crt"))))
    return made[0], made[1]


def _is_c_method(method: object) -> bool:
    return isinstance(method, types.BuiltinMethodType)


def test_every_context_hands_out_objects_whose_record_methods_are_the_c_ones(
        sources: tuple[CertSource, CertSource]) -> None:
    server, client = sources
    contexts = (server.front_context("1.2"), server.server_context("1.2"), client.client_context("1.2"),
                client.client_context("1.3", ("h2",)))
    for context in contexts:
        assert context.sslobject_class is FastSSLObject
        server_side = context.protocol == ssl.PROTOCOL_TLS_SERVER
        obj = context.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_side=server_side)
        assert isinstance(obj, ssl.SSLObject)
        assert all(_is_c_method(getattr(obj, name)) for name in ("read", "write", "pending")), context
    plain = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO())
    assert not _is_c_method(plain.read)  # (the standard class: Python frames; what this module removes)


def test_records_identities_and_errors_as_the_standard_object(sources: tuple[CertSource, CertSource]) -> None:
    server, client = sources
    front = server.front_context("1.2")  # its SNI callback switches each handshake to the current context
    theirs, ours, (s_in, s_out, c_in, c_out) = memory_pair(front, client.client_context("1.2"))
    assert isinstance(theirs, FastSSLObject) and isinstance(ours, FastSSLObject)
    assert verify_peer(theirs, frozenset({TD})) == f"spiffe://{TD}/ns/a/sa/client"
    assert verify_peer(ours, frozenset({TD})) == f"spiffe://{TD}/ns/a/sa/server"
    assert theirs.context is server.server_context("1.2")

    with pytest.raises(ssl.SSLWantReadError):  # nothing to read yet: the loops' signal to wait
        theirs.read(1024)
    assert ours.write(b"GET / HTTP/1.1\r\n\r\n") == 18
    assert ours.write(memoryview(b"body")) == 4  # any buffer, as the loops pass slices of a backlog
    s_in.write(c_out.read())
    assert s_in.pending > 0 and theirs.pending() == 0  # (decrypted only when read)
    assert theirs.read(5) == b"GET /"
    assert theirs.pending() == 13  # the rest of that record, decrypted and waiting
    buffer = bytearray(64)
    assert theirs.read(64, buffer) == 13  # read into a buffer, as a buffered protocol's loop does
    assert bytes(buffer[:13]) == b" HTTP/1.1\r\n\r\n"
    assert theirs.read(256 * 1024) == b"body"

    theirs.write(b"x" * 40_000)  # more than one record
    c_in.write(s_out.read())
    got = b""
    while True:
        try:
            got += ours.read(256 * 1024)
        except ssl.SSLWantReadError:
            break
    assert got == b"x" * 40_000


def test_an_event_loop_carries_requests_both_ways_with_them(sources: tuple[CertSource, CertSource]) -> None:
    server, client = sources

    class Echo(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            self.transport.write(data.upper())  # type: ignore[attr-defined]

    async def main() -> tuple[bytes, object]:
        loop = asyncio.get_running_loop()
        listening = await loop.create_server(Echo, "127.0.0.1", 0, ssl=server.front_context("1.2"))
        port = listening.sockets[0].getsockname()[1]
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client.client_context("1.2"),
                                                           server_hostname="")
            sslobj = writer.get_extra_info("ssl_object")
            got = b""
            for i in range(50):
                writer.write(b"ping %d;" % i)
                got += await reader.readexactly(len(b"PING %d;" % i))
            writer.write(b"z" * 100_000)
            got += await reader.readexactly(100_000)
            writer.close()
            await writer.wait_closed()
        finally:
            listening.close()
        return got, sslobj

    loop = uvloop.new_event_loop()
    try:
        got, sslobj = loop.run_until_complete(asyncio.wait_for(main(), 10))
    finally:
        loop.close()
    assert got == b"".join(b"PING %d;" % i for i in range(50)) + b"Z" * 100_000
    assert isinstance(sslobj, FastSSLObject)

