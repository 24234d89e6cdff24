"""A batch answer read as it streams in (`batch.stream_results`): each caller is answered when its line arrives.

An `ndjson` upstream that writes one result line per item as each completes (a chunked answer) lets its early
items return early instead of waiting for the batch's slowest. Lines are matched to items in order: line i is
item i's result (the ndjson wire format has no id field); or, with `batch.stream_index_field: NAME`, by the
item's position in the batch (0-based) that each line names in its field NAME, so that an upstream may write
its lines in the order its items complete. The core here is sans-I/O: `StreamSplit` takes the
body's pieces (`data`), and the end or the break of the stream, and calls `answer(index, result)` for each item
whose line is complete; upstream_call.py feeds it from the answer's `BodyStream` (http/stream.py).

- A line that is not one JSON document: that item alone gets 502 `upstream_not_json`; the next lines go on.
- The stream ends with fewer lines than items: the items without one get 502 `upstream_result_count`; lines
  beyond the last item are counted (`extra`) and dropped, as are, by index, lines whose field is not an
  integer position of the batch, or names an item that already has its line.
- The stream breaks (reset, timeout, too large): the items already answered keep their answers; the others get
  the stream's error, which the route's retry policy may send again (only those: batching/retry.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

import msgspec

from meshbatch.batching.batch import Outcome
from meshbatch.batching.codecs.base import ItemResult
from meshbatch.batching.codecs.failures import failure
from meshbatch.errors import ProxyError


class LineCodec(Protocol):
    """A codec whose answer is one result per line (ndjson): what `StreamSplit` needs of it."""

    name: str

    def decode_line(self, number: int, line: bytes) -> ItemResult:
        """The result of the answer's line `number` (1-based), stripped; a 502 result when it is not valid."""
        ...


def streams_lines(codec: object) -> bool:
    """True for a codec whose answers `StreamSplit` can read line by line."""
    return callable(getattr(codec, "decode_line", None))


Position = Callable[[bytes], "int | None"]


def index_reader(field: str) -> Position:
    """The item position a line names in its field `field` (an integer), or None."""
    decoder = msgspec.json.Decoder(msgspec.defstruct("Line", [(field, int | None, None)]))

    def position(line: bytes) -> int | None:
        try:
            value: int | None = getattr(decoder.decode(line), field)
        except (msgspec.DecodeError, RecursionError):
            return None
        return value

    return position


class StreamSplit:
    """The results of one streamed batch answer of `size` items, handed out as their lines complete."""

    __slots__ = ("_buffer", "_codec", "_position", "_results", "answer", "extra", "lines", "size")

    def __init__(self, codec: LineCodec, size: int, answer: Callable[[int, ItemResult], None],
                 position: Position | None = None) -> None:
        self._codec = codec
        self.size = size
        self.answer = answer  # (item index, result): called once per item, as soon as its line is complete
        self._position = position  # None: lines in item order
        self._buffer = b""
        self._results: list[Outcome | None] = [None] * size
        self.lines = 0  # result lines read so far
        self.extra = 0  # lines beyond the last item (dropped)

    @property
    def answered(self) -> int:
        return min(self.lines, self.size)

    def data(self, chunk: bytes) -> None:
        """A piece of the body: every line it completes is decoded and answered now."""
        if b"\n" not in chunk:
            self._buffer += chunk
            return
        head, _, rest = chunk.rpartition(b"\n")
        text = self._buffer + head if self._buffer else head
        self._buffer = rest
        for raw in text.split(b"\n"):
            self._line(raw)

    def _line(self, raw: bytes) -> None:
        line = raw.strip()
        if not line:
            return
        number = self.lines + self.extra + 1  # of the answer's lines
        if self.lines >= self.size:
            self.extra += 1
            return
        if self._position is None:
            index = self.lines
        else:
            named = self._position(line)
            if named is None or not 0 <= named < self.size or self._results[named] is not None:
                self.extra += 1
                return
            index = named
        self.lines += 1
        result = self._codec.decode_line(number, line)
        self._results[index] = result
        self.answer(index, result)

    def end(self) -> list[Outcome]:
        """The body ended cleanly: the last line (without a final line break) counts; items without a line get
        502 `upstream_result_count`. One outcome per item."""
        if self._buffer:
            rest, self._buffer = self._buffer, b""
            self._line(rest)
        if self.lines < self.size:
            missing = failure("upstream_result_count",
                              f"the batch had {self.size} items and the streamed answer {self.lines} lines")
            return [missing if result is None else result for result in self._results]
        return [result for result in self._results if result is not None]

    def abort(self, error: ProxyError) -> list[Outcome]:
        """The body broke off: the items without a complete line get `error`. One outcome per item."""
        self._buffer = b""
        return [error if result is None else result for result in self._results]


class StreamReader:
    """The sink of a streamed batch answer (http/stream.py `StreamSink`): lines to `split`, or, without one (an
    answer that is not 2xx), the body kept whole; `done` gets None at the clean end, or the stream's error."""

    __slots__ = ("body", "done", "split")

    def __init__(self, split: StreamSplit | None, done: asyncio.Future[ProxyError | None]) -> None:
        self.split = split
        self.done = done
        self.body: list[bytes] = []

    def stream_data(self, data: bytes) -> None:
        if self.split is not None:
            self.split.data(data)
        else:
            self.body.append(data)

    def stream_end(self) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def stream_abort(self, error: ProxyError) -> None:
        if not self.done.done():
            self.done.set_result(error)


__all__ = ["LineCodec", "Position", "StreamReader", "StreamSplit", "index_reader", "streams_lines"]
