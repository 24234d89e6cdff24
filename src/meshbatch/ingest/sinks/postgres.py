"""`postgres` sink (asyncpg): one transaction per batch, one multi-row statement per batch
(`INSERT ... SELECT * FROM unnest($1::text[], ...) ON CONFLICT (id) DO NOTHING`: typed arrays in the binary
protocol, one round trip, each event id stored once however often its batch is delivered).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import asyncpg

from meshbatch.ingest.record import Record
from meshbatch.ingest.sinks.base import SINKS, BatchRejected, EventSink, Outcome, SinkContext, SinkUnavailable
from meshbatch.ingest.sinks.mapping import MappedColumn, batch_rows, columns_of, id_index, quote
from meshbatch.ingest.sinks.sharded import ShardedSink

PG_TYPES = {"id": "text", "received": "timestamptz", "payload": "jsonb", "text": "text", "bigint": "bigint",
            "double": "double precision", "boolean": "boolean", "json": "jsonb", "timestamp": "timestamptz"}
# Errors that say something about the data (class 22 data exception, class 23 integrity constraint).
DATA_ERRORS: tuple[type[BaseException], ...] = (asyncpg.exceptions.DataError,
                                                asyncpg.exceptions.IntegrityConstraintViolationError)


# Whether a unique index (the primary key's included) holds the id column alone: `ON CONFLICT` needs one, and a
# table made here has its key; one made elsewhere without gets the index.
UNIQUE_ID = ("SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
             "AND a.attnum = i.indkey[0] WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indnatts = 1 "
             "AND a.attname = $2)")


def create_statement(table: str, columns: list[MappedColumn]) -> str:
    parts = [f"{quote(c.name)} {PG_TYPES[c.type]}" + (" PRIMARY KEY" if c.type == "id" else "") for c in columns]
    return f"CREATE TABLE IF NOT EXISTS {quote(table)} ({', '.join(parts)})"


def insert_statement(table: str, columns: list[MappedColumn], id_column: str) -> str:
    names = ", ".join(quote(c.name) for c in columns)
    arrays = ", ".join(f"${i}::{PG_TYPES[c.type]}[]" for i, c in enumerate(columns, 1))
    return (f"INSERT INTO {quote(table)} ({names}) SELECT * FROM unnest({arrays}) "
            f"ON CONFLICT ({quote(id_column)}) DO NOTHING")


class PostgresSink:
    name = "postgres"

    def __init__(self, context: SinkContext, url: str | None = None) -> None:
        ingest = context.route.ingest
        assert ingest is not None
        config = ingest.sink
        self.url = url or config.url or ""  # `url`: one shard's (sinks/sharded.py); `${NAME}` expanded at load
        self.table = config.table
        self.id_column = config.id_column
        self.columns = columns_of(config)
        self.rows = batch_rows(self.columns)
        self.create = config.create_table
        self.pool_size = config.pool_size
        self.timeout = context.timeout
        self.insert = insert_statement(config.table, self.columns, config.id_column)
        self._pool: Any = None
        self._opening = asyncio.Lock()
        self.batches = self.stored = self.duplicates = 0

    async def open(self) -> None:
        if self._pool is not None:
            return
        async with self._opening:
            if self._pool is not None:
                return
            try:
                pool = await asyncpg.create_pool(self.url, min_size=self.pool_size, max_size=self.pool_size,
                                                 timeout=self.timeout, command_timeout=self.timeout)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                raise SinkUnavailable(f"postgres: cannot connect: {exc}") from exc
            try:
                if self.create:
                    async with pool.acquire() as conn:
                        await conn.execute(create_statement(self.table, self.columns))
                        if not await conn.fetchval(UNIQUE_ID, quote(self.table), self.id_column):
                            await conn.execute(id_index(self.table, self.id_column))
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                await pool.close()
                raise SinkUnavailable(f"postgres: cannot prepare table {self.table}: {exc}") from exc
            self._pool = pool

    async def deliver(self, records: Sequence[Record]) -> list[Outcome]:
        await self.open()
        rows, made = self.rows(records)
        outcomes: list[Outcome] = list(made)
        if not rows:
            return outcomes
        arrays = [list(column) for column in zip(*rows, strict=True)]
        try:
            async with self._pool.acquire(timeout=self.timeout) as conn, conn.transaction():
                status = await conn.execute(self.insert, *arrays, timeout=self.timeout)
        except DATA_ERRORS as exc:
            raise BatchRejected(f"postgres: {exc}") from exc
        except asyncpg.exceptions.UndefinedTableError as exc:
            await self._reset()
            raise SinkUnavailable(f"postgres: {exc}") from exc
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            if isinstance(exc, asyncpg.exceptions.PostgresConnectionError | asyncpg.InterfaceError | OSError):
                await self._reset()
            raise SinkUnavailable(f"postgres: {type(exc).__name__}: {exc}") from exc
        stored = int(status.rsplit(" ", 1)[-1]) if isinstance(status, str) and status[-1:].isdigit() else len(rows)
        self.batches += 1
        self.stored += stored
        self.duplicates += len(rows) - stored
        return outcomes

    async def _reset(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.terminate()

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), 5)
            except (TimeoutError, OSError, asyncpg.InterfaceError):
                pool.terminate()

    def summary(self) -> dict[str, Any]:
        return {"type": self.name, "table": self.table, "connected": self._pool is not None,
                "batches": self.batches, "stored": self.stored, "duplicates_ignored": self.duplicates}


@SINKS.register("postgres")
def _factory(context: SinkContext) -> EventSink:
    shards = context.route.ingest.sink.shards
    if shards:
        urls = [shard.url or "" for shard in shards]
        return ShardedSink(context, "postgres", [PostgresSink(context, url) for url in urls], urls)
    return PostgresSink(context)


__all__ = ["PG_TYPES", "PostgresSink", "create_statement", "insert_statement"]
