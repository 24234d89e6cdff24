"""A server and a client TLS object over memory BIOs, handshaken in process (no sockets)."""

from __future__ import annotations

import ssl


def memory_pair(server: ssl.SSLContext, client: ssl.SSLContext) -> tuple[ssl.SSLObject, ssl.SSLObject,
                                                                          list[ssl.MemoryBIO]]:
    """The server's and the client's TLS objects, handshaken; the BIOs: server in/out, client in/out."""
    bios = [ssl.MemoryBIO() for _ in range(4)]
    theirs = server.wrap_bio(bios[0], bios[1], server_side=True)
    ours = client.wrap_bio(bios[2], bios[3], server_side=False)
    for _ in range(10):
        for side in (ours, theirs):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
        bios[0].write(bios[3].read())
        bios[2].write(bios[1].read())
    return theirs, ours, bios
