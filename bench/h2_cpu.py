"""CPU time per HTTP/2 request with no sockets: one downstream HTTP/2 connection (http2/server.py) on an in-memory
transport, an echo dispatch answering each request at once, the client's bytes made beforehand. It isolates the
HTTP/2 layer's own work (h2's state machine, HPACK, the frame watch, the request and answer) from the kernel, the
load generator and the proxying (`bench/proxy_cpu.py` measures that for HTTP/1.1; `meshbatch bench h2` the whole).

Each read carries `--streams` requests, as h2load's `-m` streams arrive together: HEADERS (END_STREAM) per stream
with the headers h2load sends, HPACK-encoded with Huffman and the dynamic table as nghttp2 does, and one
connection WINDOW_UPDATE giving back what the answers used.

    .venv/bin/python -m bench.h2_cpu                    # 10 streams per read
    .venv/bin/python -m bench.h2_cpu --streams 1 --rounds 7
    .venv/bin/python -m bench.h2_cpu --profile          # cProfile of one round, top functions by own time
    .venv/bin/python -m bench.h2_cpu --floor            # h2 alone: the same bytes, the same answers, no meshbatch

Prints the best and the median of the rounds, in microseconds of process CPU time per request.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import statistics
import struct
import time
from typing import Any

import uvloop
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import RequestReceived
from hpack import Encoder
from hyperframe.frame import HeadersFrame

from bench.proxy_cpu import MemoryTransport
from meshbatch.http.message import Request, Response
from meshbatch.http.serving import Answer, ListenerState, Pending, ServerSettings
from meshbatch.http2.server import H2ServerProtocol

BODY = b"ok"
HEADERS = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"127.0.0.1:8080"), (b":path", b"/"),
           (b"user-agent", b"h2load nghttp2/1.52.0")]
ANSWER_HEADERS = [(b"content-type", b"text/plain"), (b"server", b"nginx")]


class CountingTransport(MemoryTransport):
    """The proxy benchmark's in-memory transport, counting what is written instead of keeping it."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self.written = 0
        self.last = b""

    def write(self, data: Any) -> None:
        self.writes += 1
        self.written += len(data)
        self.last = bytes(data)

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)


def echo(request: Request, answer: Answer) -> Pending | None:
    answer(Response(200, list(ANSWER_HEADERS), BODY))
    return None


class Client:
    """The client's bytes, stream after stream, as one HPACK encoder would write them."""

    def __init__(self) -> None:
        self.encoder = Encoder()
        self.next_sid = 1

    def preface(self) -> bytes:
        conn = H2Connection(H2Configuration(client_side=True))
        conn.initiate_connection()
        return conn.data_to_send() + b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"  # and the ACK of the server's SETTINGS

    def read(self, streams: int) -> bytes:
        parts = []
        for _ in range(streams):
            frame = HeadersFrame(self.next_sid, self.encoder.encode(HEADERS, huffman=True))
            frame.flags.add("END_HEADERS")
            frame.flags.add("END_STREAM")
            parts.append(frame.serialize())
            self.next_sid += 2
        credit = streams * len(BODY)
        parts.append(struct.pack(">I", 4)[1:] + b"\x08\x00" + struct.pack(">II", 0, credit))  # WINDOW_UPDATE
        return b"".join(parts)


def floor(requests: int, rounds: int, streams: int) -> list[float]:
    """h2 by itself on the same bytes: receive, answer each request (HEADERS, DATA with END_STREAM), one write per
    read, with h2's default configuration but for the checks meshbatch also leaves out (outbound validation)."""
    config = H2Configuration(client_side=False, header_encoding=None, validate_outbound_headers=False,
                             normalize_outbound_headers=False)
    conn = H2Connection(config=config)
    conn.initiate_connection()
    client = Client()
    conn.receive_data(client.preface())
    conn.data_to_send()
    answer = [(b":status", b"200"), *ANSWER_HEADERS, (b"content-length", b"%d" % len(BODY))]

    def feed(chunk: bytes) -> None:
        for event in conn.receive_data(chunk):
            if type(event) is RequestReceived:
                sid = event.stream_id
                assert sid is not None
                conn.send_headers(sid, answer)
                conn.send_data(sid, BODY, end_stream=True)
        conn.data_to_send()

    reads = max(1, requests // streams)
    for chunk in [client.read(streams) for _ in range(max(1, 2000 // streams))]:
        feed(chunk)
    results = []
    for _ in range(rounds):
        chunks = [client.read(streams) for _ in range(reads)]
        gc.collect()
        start = time.process_time()
        for chunk in chunks:
            feed(chunk)
        results.append((time.process_time() - start) / (reads * streams) * 1e6)
    return results


async def measure(requests: int, rounds: int, streams: int, profile: bool) -> list[float]:
    loop = asyncio.get_running_loop()
    settings = ServerSettings(dispatch=echo)
    server = H2ServerProtocol(ListenerState(settings), loop)
    transport = CountingTransport()
    server.connection_made(transport)
    client = Client()
    server.data_received(client.preface())
    reads = max(1, requests // streams)
    for chunk in [client.read(streams) for _ in range(max(1, 2000 // streams))]:
        server.data_received(chunk)
    if server.closed or BODY not in transport.last:
        raise SystemExit(f"the server did not answer as expected: {transport.last!r}")
    results = []
    for round_no in range(rounds):
        chunks = [client.read(streams) for _ in range(reads)]
        writes_before = transport.writes
        gc.collect()
        profiler = cProfile.Profile() if profile and round_no == rounds - 1 else None
        start = time.process_time()
        if profiler is not None:
            profiler.enable()
        for chunk in chunks:
            server.data_received(chunk)
        if profiler is not None:
            profiler.disable()
        results.append((time.process_time() - start) / (reads * streams) * 1e6)
        if server.closed or server.streams:
            raise SystemExit("the connection closed or kept streams: the figures would not be of answers")
        if profiler is not None:
            pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
        print(f"round {round_no + 1}: {results[-1]:.1f} us per request, "
              f"{(transport.writes - writes_before) / reads:.2f} writes per read")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--streams", type=int, default=10, help="requests per read (h2load -m)")
    parser.add_argument("--profile", action="store_true", help="cProfile the last round")
    parser.add_argument("--floor", action="store_true", help="h2 alone, without meshbatch (its floor)")
    args = parser.parse_args()
    if args.floor:
        results = floor(args.requests, args.rounds, max(1, args.streams))
    else:
        results = uvloop.run(measure(args.requests, args.rounds, max(1, args.streams), args.profile))
    what = "h2 alone" if args.floor else "meshbatch's HTTP/2 server"
    print(f"{what}: best {min(results):.1f} us, median {statistics.median(results):.1f} us of CPU per request "
          f"({args.rounds} rounds x {args.requests}, {args.streams} streams per read)")


if __name__ == "__main__":
    main()
