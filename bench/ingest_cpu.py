"""CPU per accepted event with no sockets: an ingest route (`ack: fsync`, the SQLite log and sink in a temporary
directory) behind in-memory connections, 64 producers sending one request each per turn and waiting for their
202s, the flusher delivering meanwhile. It isolates the proxy's own work (HTTP, pipeline, log, sink, all threads
of the process) from the kernel's sockets and the load generator, so two builds can be compared on a shared
machine (`meshbatch bench ingest` measures the whole):

    PYTHONPATH=.venv/compiled .venv/bin/python -m bench.ingest_cpu                  # single JSON events
    PYTHONPATH=.venv/compiled .venv/bin/python -m bench.ingest_cpu --events 100     # 100-event NDJSON requests

Prints the best and the median of the rounds, in microseconds of process CPU time per event (the fsyncs are
waited for, not counted). Instructions per event, repeatable whatever else the machine runs: `--only N` sends N
turns, waits until every event is delivered, and prints nothing; under callgrind the difference of two N gives
the instructions per turn (start-up cancels), divided by 64 x events a request:

    for n in 20 120; do PYTHONPATH=.venv/compiled valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python -m bench.ingest_cpu --events 100 --only $n 2>&1 | grep refs; done

`--full` measures refusals instead: the log holds one request's events and nothing is delivered, so after the
first request every one is answered 429 `ingest_log_full` (what producers that send again at once after a 429
cost); the figure is then CPU per refused request (`--rounds 1 --turns N` under callgrind: --only waits for
deliveries).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

from meshbatch.http.server import HttpServerProtocol, ListenerState
from meshbatch.runtime.app import Proxy
from meshbatch.runtime.settle import settle

from .proxy_cpu import MemoryTransport
from .scenario_ingest import EVENT, ndjson_body

PRODUCERS = 64


class Producer(MemoryTransport):
    """One keep-alive connection: counts the answers written to it (one write an answer) and wakes the turn."""

    def __init__(self, turn: Turn) -> None:
        super().__init__()
        self.turn = turn

    def write(self, data: Any) -> None:
        if bytes(data).startswith(b"HTTP/1.1 202") or (self.turn.full and bytes(data).startswith(b"HTTP/1.1 429")):
            self.turn.answered()
        else:
            raise SystemExit(f"not accepted: {bytes(data)[:300]!r}")

    def writelines(self, chunks: Any) -> None:
        self.write(b"".join(bytes(c) for c in chunks))


class Turn:
    def __init__(self, full: bool = False) -> None:
        self.full = full  # refusals expected
        self.left = 0
        self.done: asyncio.Future[None] | None = None

    def answered(self) -> None:
        self.left -= 1
        if self.left == 0 and self.done is not None:
            self.done.set_result(None)


def config(folder: Path, events: int, slow: bool = False, full: bool = False) -> str:
    """The route; `slow` (under callgrind) gives the inline decode the longest slice, so that no request moves
    to the pipeline's worker process, whose instructions callgrind does not see."""
    route: dict[str, Any] = {"name": "events", "match": {"path_prefix": "/events"},
                             "ingest": {"ack": "fsync", "log": {"path": str(folder / "log.db")},
                                        "sink": {"type": "sqlite", "path": str(folder / "sink.db")}}}
    if events > 1:
        route["pipeline"] = [{"decode": {"format": "ndjson"}}]
        if slow:
            route["pipeline_limits"] = {"inline_slice_ms": 1000}
    if full:  # room for one request's events
        route["ingest"]["log"]["max_events"] = events
    return json.dumps({"listeners": [{"name": "main", "listen": "127.0.0.1:0", "routes": [route]}]})


async def measure(events: int, turns: int, rounds: int, only: int = 0, full: bool = False) -> list[float]:
    loop = asyncio.get_running_loop()
    folder = Path(tempfile.mkdtemp(prefix="meshbatch-ingest-cpu-"))
    path = folder / "ingest.yaml"
    path.write_text(config(folder, events, slow=bool(only), full=full))
    proxy = Proxy(path, loop, announce=lambda line: None)
    route = proxy.snapshot.ingest["events"]
    await route.start()
    if full:
        await route.flusher.stop(1.0)  # nothing leaves the log
    body = (ndjson_body(events) if events > 1 else EVENT).encode()
    media = b"application/x-ndjson" if events > 1 else b"application/json"
    request = (b"POST /events HTTP/1.1\r\nHost: svc\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s"
               % (media, len(body), body))
    turn = Turn(full)
    listener = proxy.snapshot.config.listeners[0]
    state = ListenerState(proxy._listener_settings(listener, proxy.snapshot))
    servers = []
    for _ in range(PRODUCERS):
        server = HttpServerProtocol(state, loop)
        server.connection_made(Producer(turn))
        servers.append(server)
    settle()  # the collector as `meshbatch run` leaves it once it serves (runtime/settle.py)

    async def run(n: int) -> None:
        for _ in range(n):
            turn.left, turn.done = PRODUCERS, loop.create_future()
            for server in servers:
                server.data_received(request)
            await turn.done

    async def delivered() -> None:
        while route.log.stats()["backlog"] and not full:
            await asyncio.sleep(0.01)

    try:
        if only:
            await run(only)
            await delivered()
            return []
        await run(20)
        results = []
        for _ in range(rounds):
            await delivered()
            start = time.process_time()
            await run(turns)
            await delivered()
            results.append((time.process_time() - start) / (turns * PRODUCERS * (1 if full else events)) * 1e6)
        return results
    finally:
        await route.drain(5.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1, help="events a request (above 1: NDJSON, decoded)")
    parser.add_argument("--turns", type=int, default=0, help=f"turns of {PRODUCERS} requests per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--full", action="store_true",
                        help="a full log: CPU per request refused (429) instead of per event accepted")
    parser.add_argument("--only", type=int, default=0, metavar="N",
                        help="send N turns and print nothing (for callgrind's instruction counts)")
    args = parser.parse_args()
    turns = args.turns or max(10, 20_000 // (PRODUCERS * args.events))
    results = uvloop.run(measure(args.events, turns, args.rounds, args.only, args.full))
    if args.only:
        return
    what = "refused request" if args.full else "event"
    print(f"best {min(results):.2f} us, median {statistics.median(results):.2f} us of CPU per {what} "
          f"({args.rounds} rounds x {turns} turns x {PRODUCERS} requests x {args.events} events)")


if __name__ == "__main__":
    main()
