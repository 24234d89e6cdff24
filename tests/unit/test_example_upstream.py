"""`meshbatch example-upstream` (the quick start's upstream) as an ASGI app, through httpx's ASGI transport."""

from __future__ import annotations

import argparse
import asyncio

import httpx
import pytest

from meshbatch.cli import build_parser
from meshbatch.demo.upstream import Stats, build_app


def _run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_a_batch_is_answered_item_by_item_and_counted() -> None:
    stats = Stats()

    async def go() -> None:
        transport = httpx.ASGITransport(app=build_app(delay_ms=0, stats=stats))
        async with httpx.AsyncClient(transport=transport, base_url="http://upstream") as client:
            answer = await client.post("/orders/batch", json=[{"sku": "A1"}, {"sku": "B2"}])
            assert answer.status_code == 200
            assert answer.json() == [{"order": {"sku": "A1"}, "batch_size": 2},
                                     {"order": {"sku": "B2"}, "batch_size": 2}]
            assert (await client.get("/health")).json() == {"status": "ok"}
            assert (await client.post("/orders/batch", content=b"not json")).status_code == 400
            assert (await client.post("/elsewhere", json=[1])).status_code == 404
            assert (await client.get("/stats")).json() == {"calls": 1, "items": 2, "largest_batch": 2}

    _run(go())


def test_other_codecs_are_served_too() -> None:
    async def go() -> None:
        transport = httpx.ASGITransport(app=build_app(delay_ms=0, codec="ndjson"))
        async with httpx.AsyncClient(transport=transport, base_url="http://upstream") as client:
            answer = await client.post("/orders/batch", content=b'{"sku": "A1"}\n{"sku": "B2"}\n',
                                       headers={"content-type": "application/x-ndjson"})
            assert answer.status_code == 200 and len(answer.text.strip().splitlines()) == 2

    _run(go())


@pytest.mark.parametrize("listen", ["9000", "host:", ":9000", "h:0", "h:70000", "h:x", ""])
def test_a_bad_listen_address_is_a_usage_error(listen: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args(["example-upstream", "--listen", listen])
    assert caught.value.code == 2 and "HOST:PORT" in capsys.readouterr().err


def test_the_defaults_are_the_quick_start_s() -> None:
    args = build_parser().parse_args(["example-upstream"])
    assert isinstance(args, argparse.Namespace)
    assert (args.listen, args.delay_ms, args.codec, args.path) == (("127.0.0.1", 9000), 5.0, "json-array",
                                                                    "/orders/batch")
