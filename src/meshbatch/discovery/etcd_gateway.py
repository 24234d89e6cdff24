"""A small client of etcd's v3 HTTP/JSON gateway (`/v3/kv/range`, `/v3/watch`) over asyncio streams.

Keys and values travel base64-encoded; a watch is one long POST whose chunked answer carries one JSON
message per line. Only what prefix discovery needs: a range read and a prefix watch.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import httptools
import orjson


class EtcdError(Exception):
    pass


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


def prefix_end(prefix: bytes) -> bytes:
    """The first key after every key starting with `prefix` (etcd's range_end for a prefix)."""
    raw = bytearray(prefix)
    while raw:
        if raw[-1] < 0xFF:
            raw[-1] += 1
            return bytes(raw)
        raw.pop()
    return b"\x00"


class _Answer:
    """httptools callbacks: status, then body chunks into a queue (None at the end)."""

    def __init__(self) -> None:
        self.status = 0
        self.chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.parser = httptools.HttpResponseParser(self)

    def on_status(self, status: bytes) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self.chunks.put_nowait(body)

    def on_message_complete(self) -> None:
        self.chunks.put_nowait(None)


class EtcdGateway:
    def __init__(self, url: str, timeout: float) -> None:
        rest = url.removeprefix("http://").rstrip("/")
        host, _, port = rest.rpartition(":")
        self.host = host.strip("[]")
        self.port = int(port)
        self.timeout = timeout

    async def _open(self, path: str, payload: dict[str, Any]) -> tuple[asyncio.StreamWriter, _Answer,
                                                                         asyncio.Task[None]]:
        async with asyncio.timeout(self.timeout):
            reader, writer = await asyncio.open_connection(self.host, self.port)
        body = orjson.dumps(payload)
        writer.write(b"POST %s HTTP/1.1\r\nhost: %s:%d\r\ncontent-type: application/json\r\n"
                     b"content-length: %d\r\n\r\n%s" % (path.encode(), self.host.encode(), self.port,
                                                        len(body), body))
        answer = _Answer()

        async def pump() -> None:
            try:
                while data := await reader.read(65536):
                    answer.parser.feed_data(data)
            except (OSError, httptools.HttpParserError):
                pass
            answer.chunks.put_nowait(None)

        return writer, answer, asyncio.get_running_loop().create_task(pump())

    async def call(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        writer, answer, pump = await self._open(path, payload)
        try:
            parts = []
            async with asyncio.timeout(self.timeout):
                while (chunk := await answer.chunks.get()) is not None:
                    parts.append(chunk)
        finally:
            pump.cancel()
            writer.close()
        data = orjson.loads(b"".join(parts) or b"{}")
        if answer.status != 200:
            raise EtcdError(f"{path}: status {answer.status}: {data.get('error') or data.get('message')}")
        if not isinstance(data, dict):
            raise EtcdError(f"{path}: not a JSON object")
        return data

    async def range_prefix(self, prefix: bytes) -> tuple[dict[bytes, bytes], int]:
        """Every key under `prefix` with its value, and the store's revision."""
        data = await self.call("/v3/kv/range", {"key": b64(prefix), "range_end": b64(prefix_end(prefix))})
        kvs = {unb64(kv["key"]): unb64(kv.get("value", "")) for kv in data.get("kvs", [])}
        return kvs, int(data.get("header", {}).get("revision", 0))

    async def watch_prefix(self, prefix: bytes, start_revision: int) -> AsyncIterator[list[dict[str, Any]]]:
        """Each watch message's events, from `start_revision` on, until the stream ends (raises EtcdError)."""
        request = {"create_request": {"key": b64(prefix), "range_end": b64(prefix_end(prefix)),
                                      "start_revision": start_revision}}
        writer, answer, pump = await self._open("/v3/watch", request)
        buffer = b""
        try:
            while (chunk := await answer.chunks.get()) is not None:
                buffer += chunk
                while b"\n" in buffer:
                    line, _, buffer = buffer.partition(b"\n")
                    if line.strip():
                        yield _watch_events(orjson.loads(line))
            if buffer.strip():
                yield _watch_events(orjson.loads(buffer))
        finally:
            pump.cancel()
            writer.close()
        raise EtcdError("the watch stream ended")


def _watch_events(message: dict[str, Any]) -> list[dict[str, Any]]:
    if "error" in message:
        raise EtcdError(f"watch: {message['error']}")
    result = message.get("result", {})
    if result.get("canceled"):
        raise EtcdError(f"watch canceled (compact revision {result.get('compact_revision', '?')}): "
                        f"{result.get('cancel_reason', '')}")
    events: list[dict[str, Any]] = result.get("events", [])
    return events


__all__ = ["EtcdError", "EtcdGateway", "b64", "prefix_end", "unb64"]
