"""Instructions per HTTP/2 request, for callgrind: `bench/h2_cpu.py`'s server connection (in-memory transport,
echo dispatch, 10 streams per read) with a short warm-up and one pass over `N` requests, nothing else. Run twice
under callgrind and take the difference, so start-up and warm-up cancel out:

    for n in 200 1200; do PYTHONPATH=.venv/compiled valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python -m bench.h2_instructions $n 2>&1 | grep refs; done   # (difference) / 1000

The figure includes the client's side of each request (its HPACK encoding and framing, made in the same process
before the pass): the same for every build of meshbatch, so differences between builds are meshbatch's own.
"""

from __future__ import annotations

import asyncio
import sys

import uvloop

from bench.h2_cpu import Client, CountingTransport, echo
from meshbatch.http.serving import ListenerState, ServerSettings
from meshbatch.http2.server import H2ServerProtocol


async def main(requests: int) -> None:
    loop = asyncio.get_running_loop()
    server = H2ServerProtocol(ListenerState(ServerSettings(dispatch=echo)), loop)
    transport = CountingTransport()
    server.connection_made(transport)
    client = Client()
    server.data_received(client.preface())
    for chunk in [client.read(10) for _ in range(10 + requests // 10)]:
        server.data_received(chunk)
    if server.closed or b"ok" not in transport.last:
        raise SystemExit("the server did not answer as expected")


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000))
