"""The consumer of the multi-host chaos scenario: a batch upstream (json-array codec) that stores each item of a
batch in PostgreSQL, one statement (so one transaction and one round trip) per batch, and answers only once it is
committed.

`python -m testbed.order_consumer --listen HOST:PORT --pg URL --table T --host NAME`; prints `ready` once it
listens. POST /batch takes a JSON array of `{"id": ...}` and answers `[{"id": ..., "host": NAME}, ...]`. A row is
`(id, host, at, deliveries)`: the first delivery inserts it (with the wall clock `at`), any later one only counts
in `deliveries` (a retried request delivered twice is visible, never stored twice). GET /health answers 200.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
from typing import Any

TABLE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def create_table_sql(table: str) -> str:
    assert TABLE.match(table), table
    return (f"CREATE TABLE IF NOT EXISTS {table} (id text PRIMARY KEY, host text NOT NULL, "
            "at double precision NOT NULL, deliveries integer NOT NULL DEFAULT 1)")


def insert_sql(table: str) -> str:
    assert TABLE.match(table), table
    return (f"INSERT INTO {table} (id, host, at) SELECT unnest($1::text[]), $2, $3 "
            f"ON CONFLICT (id) DO UPDATE SET deliveries = {table}.deliveries + 1")


async def serve(listen: str, pg: str, table: str, host: str) -> None:
    import asyncpg
    import orjson
    from aiohttp import web

    pool = await asyncpg.create_pool(pg, min_size=1, max_size=4)
    insert = insert_sql(table)

    async def batch(request: web.Request) -> web.Response:
        try:
            items: Any = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return web.Response(status=400, text="not JSON")
        if not isinstance(items, list) or not all(isinstance(i, dict) and isinstance(i.get("id"), str)
                                                  for i in items):
            return web.Response(status=400, text="a JSON array of objects with a string id")
        ids = list(dict.fromkeys(i["id"] for i in items))  # one statement (atomic, one round trip) per batch
        async with pool.acquire() as conn:
            await conn.execute(insert, ids, host, time.time())
        body = orjson.dumps([{"id": i["id"], "host": host} for i in items])
        return web.Response(body=body, content_type="application/json")

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/batch", batch)
    app.router.add_get("/health", health)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    address, _, port = listen.rpartition(":")
    await web.TCPSite(runner, address, int(port)).start()
    print("ready", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        await pool.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.order_consumer")
    parser.add_argument("--listen", required=True)
    parser.add_argument("--pg", required=True)
    parser.add_argument("--table", required=True)
    parser.add_argument("--host", required=True)
    args = parser.parse_args(argv)
    if not TABLE.match(args.table):
        parser.error("--table: a lower-case SQL name")
    try:
        asyncio.run(serve(args.listen, args.pg, args.table, args.host))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
