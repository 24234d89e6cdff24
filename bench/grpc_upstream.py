"""The gRPC upstream of the `grpc` scenario: a grpcio (grpc.aio) server doing the batching scenario's work.

    /bench.Work/Get                      unary: one item, the `fixed` work of batch_work.py (one worker, FIFO)
    /meshbatch.batch.v1.Batch/Process    its batch method: n items in meshbatch's envelope, served by the
                                         consumer SDK's serve_grpc, one call of the same work for the n items
    /bench.Work/Echo                     unary, no work: the request back (the proxying comparison)
    /bench.Work/Stats, /bench.Work/Reset the work's counters as JSON (batch_work.Work.stats), and clearing them

Messages are raw bytes (no generated code). Default cost: 2 ms per call + 20 us per item, as `bench batching`.
Run as a script on 127.0.0.1: python grpc_upstream.py --port 9000 --base-ms 2 --per-item-us 20
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import grpc

from batch_work import Work  # sibling modules: run as `python bench/grpc_upstream.py`
from meshbatch.consumer import serve_grpc
from serve_loop import serve_until_interrupted

HOST = "127.0.0.1"
SERVICE = "bench.Work"


async def serve(port: int, base_ms: float, per_item_us: float) -> None:
    work = Work("fixed", base_ms, per_item_us)

    async def get(request: bytes, context: Any) -> bytes:
        await work.run([None])
        return b"ok"

    async def echo(request: bytes, context: Any) -> bytes:
        return request

    async def stats(request: bytes, context: Any) -> bytes:
        return json.dumps(work.stats()).encode()

    async def reset(request: bytes, context: Any) -> bytes:
        work.reset()
        return b"{}"

    async def handle(items: list[bytes]) -> list[bytes]:
        await work.run([None] * len(items))
        return [b"ok"] * len(items)

    server = grpc.aio.server(options=[("grpc.max_concurrent_streams", 1024)])
    methods = {name: grpc.unary_unary_rpc_method_handler(fn)  # bytes in, bytes out
               for name, fn in (("Get", get), ("Echo", echo), ("Stats", stats), ("Reset", reset))}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, methods),))
    await serve_grpc(handle, server=server, isolate=False)
    server.add_insecure_port(f"{HOST}:{port}")
    await server.start()
    await server.wait_for_termination()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--base-ms", type=float, default=2.0, help="cost of every call")
    parser.add_argument("--per-item-us", type=float, default=20.0, help="cost of every item of a call")
    args = parser.parse_args(argv)
    return serve_until_interrupted(serve(args.port, args.base_ms, args.per_item_us))


if __name__ == "__main__":
    raise SystemExit(main())
