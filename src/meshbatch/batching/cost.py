"""What one item costs against a batch's cost budget (`batch.max_cost`, `batch.cost`).

- `bytes`: the length of the request body;
- `header:NAME`: the value of that request header, a non-negative decimal number;
- `json:PATH`: the value at a dotted path of the JSON body (`inputs.0.tokens`: key `inputs`, its first element,
  key `tokens`); a number counts as itself, a string, array or object as its length (characters, elements,
  keys), so `json:inputs` on `{"inputs": [...]}` is the number of inputs.
A cost that cannot be read (no such header or path, not a number, negative, not finite, a body that is not JSON)
is the caller's error: 400 `bad_cost`, with what was expected.
"""

from __future__ import annotations

import math

import orjson

from meshbatch.errors import BadRequest
from meshbatch.http.message import Request


class CostReader:
    """Reads the cost of requests for one route's `batch.cost` spec (validated by the config model)."""

    __slots__ = ("header", "kind", "path", "spec")

    def __init__(self, spec: str) -> None:
        self.spec = spec
        kind, _, name = spec.partition(":")
        self.kind = kind
        self.header = name.strip().lower().encode("latin-1") if kind == "header" else b""
        self.path: tuple[str, ...] = tuple(name.split(".")) if kind == "json" else ()
        if kind not in ("bytes", "header", "json"):
            raise ValueError(f"{spec!r}: a cost is 'bytes', 'header:NAME' or 'json:PATH'")

    def read(self, request: Request) -> float:
        if self.kind == "bytes":
            return float(len(request.body))
        if self.kind == "header":
            value = request.header(self.header)
            if value is None:
                raise BadRequest("bad_cost", f"the {self.header.decode('latin-1')} header (the item's cost) is missing")
            return _number(value, f"the {self.header.decode('latin-1')} header")
        return self._json(request.body)

    def _json(self, body: bytes) -> float:
        where = "json:" + ".".join(self.path)
        try:
            value: object = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise BadRequest("bad_cost", f"the body is not JSON: its cost ({where}) cannot be read") from None
        for step in self.path:
            if isinstance(value, dict):
                if step not in value:
                    raise BadRequest("bad_cost", f"the body has no {where} (its cost)")
                value = value[step]
            elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
                value = value[int(step)]
            else:
                raise BadRequest("bad_cost", f"the body has no {where} (its cost)")
        if isinstance(value, bool) or value is None:
            raise BadRequest("bad_cost", f"{where} must be a number, a string, an array or an object")
        if isinstance(value, int | float):
            return _valid(float(value), where)
        assert isinstance(value, str | list | dict)
        return float(len(value))

    def __repr__(self) -> str:
        return f"<CostReader {self.spec}>"


def _number(raw: bytes, where: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    return _valid(value, where)


def _valid(value: float, where: str) -> float:
    if not math.isfinite(value) or value < 0:
        raise BadRequest("bad_cost", f"{where} (the item's cost) must be a non-negative finite number")
    return value


__all__ = ["CostReader"]
