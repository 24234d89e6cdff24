"""The demo producer: single JSON events over keep-alive connections, closed loop, for a fixed time.

It speaks HTTP/1.1 with meshbatch's own upstream connection class, so the producer costs little CPU and
the figures show the path being measured, not the load generator.

Standalone (a pod of the Kubernetes example): `python -m meshbatch.demo.producer --target service:80` sends
events without end, prints one JSON line of figures per round, and answers `GET /health` on `--status-port`
with the last round's figures (the pod's probes).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import orjson

from meshbatch.errors import ProxyError
from meshbatch.http.client import UpstreamConnection
from meshbatch.http.serialize import encode_request


@dataclass
class RunResult:
    name: str
    run: str = ""
    upstream_calls: int = 0
    seconds: float = 0.0
    sent: int = 0
    ok: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=list)

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0


async def _connect(host: str, port: int) -> UpstreamConnection:
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(lambda: UpstreamConnection(loop, 1 << 20), host, port)
    return conn


async def produce(name: str, run: str, targets: Sequence[tuple[str, int]], path: str, host_header: str,
                  duration: float, concurrency: int, on_progress: Callable[[int], None] | None = None) -> RunResult:
    """Send events for `duration` seconds from `concurrency` connections spread over `targets`."""
    loop = asyncio.get_running_loop()
    result = RunResult(name, run)
    counter = itertools.count()
    prefix = os.urandom(4).hex()
    stop_at = loop.time() + duration
    target_cycle = itertools.cycle(targets)

    async def worker(target: tuple[str, int]) -> None:
        conn = await _connect(*target)
        try:
            while loop.time() < stop_at:
                seq = next(counter)
                event = {"id": f"{prefix}-{seq}", "run": run, "seq": seq, "sensor": seq % 97, "value": seq * 0.5}
                body = orjson.dumps(event)
                data = encode_request(b"POST", path.encode(), [(b"host", host_header.encode()),
                                                               (b"content-type", b"application/json")], body)
                if conn.closed or not conn.keep_alive:
                    conn = await _connect(*target)
                started = loop.time()
                result.sent += 1
                try:
                    response = await conn.send(data, head=False, deadline=started + 10)
                except ProxyError as error:
                    result.failed[error.reason] = result.failed.get(error.reason, 0) + 1
                    continue
                result.latencies.append(loop.time() - started)
                if 200 <= response.status < 300:
                    result.ok += 1
                    for name_, value in response.headers:
                        if name_ == b"x-meshbatch-batch-size":
                            result.batch_sizes.append(int(value))
                else:
                    key = f"http_{response.status}"
                    result.failed[key] = result.failed.get(key, 0) + 1
                if on_progress is not None:
                    on_progress(1)
        finally:
            conn.close()

    started = loop.time()
    await asyncio.gather(*(worker(next(target_cycle)) for _ in range(concurrency)))
    result.seconds = loop.time() - started
    return result


def _summary(result: RunResult) -> dict[str, object]:
    sizes = result.batch_sizes
    return {"events_per_s": round(result.rate, 1), "ok": result.ok, "failed": result.failed,
            "p50_ms": round(result.percentile(0.5) * 1000, 2), "p99_ms": round(result.percentile(0.99) * 1000, 2),
            "mean_batch": round(sum(sizes) / len(sizes), 1) if sizes else None}


async def _status_server(port: int, last: dict[str, object]) -> asyncio.Server:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            body = orjson.dumps(last)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n"
                         b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(answer, "0.0.0.0", port)


async def _forever(args: argparse.Namespace) -> None:
    host, _, port = args.target.rpartition(":")
    last: dict[str, object] = {"rounds": 0}
    server = await _status_server(args.status_port, last) if args.status_port else None
    rounds = 0
    try:
        while args.rounds == 0 or rounds < args.rounds:
            rounds += 1
            try:
                result = await produce("standalone", args.run, [(host.strip("[]"), int(port))], args.path,
                                       args.host_header, args.round_seconds, args.concurrency)
            except OSError as exc:
                logging.getLogger("meshbatch.demo").warning("cannot reach %s: %s", args.target, exc)
                await asyncio.sleep(1.0)
                continue
            last.update(_summary(result), rounds=rounds)
            print(orjson.dumps(last).decode(), flush=True)
    finally:
        if server is not None:
            server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="meshbatch-demo-producer")
    parser.add_argument("--target", required=True, help="HOST:PORT to send to, e.g. service:80")
    parser.add_argument("--host-header", default="service", help="the Host header (default: service)")
    parser.add_argument("--path", default="/events")
    parser.add_argument("--concurrency", type=int, default=4, help="connections (default 4)")
    parser.add_argument("--round-seconds", type=float, default=10.0, help="seconds per line of figures")
    parser.add_argument("--rounds", type=int, default=0, help="stop after N rounds (default 0: never)")
    parser.add_argument("--run", default=os.environ.get("HOSTNAME", "producer"), help="the run tag stored")
    parser.add_argument("--status-port", type=int, default=0, help="answer GET /health here (0: no)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    import uvloop

    uvloop.run(_forever(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["RunResult", "main", "produce"]
