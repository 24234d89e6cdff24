"""`loadgen.py` (open loop, no coordinated omission) sending a small JSON body with POST instead of GET.

Run as a script, with loadgen's own options plus `--body`:
    python post_loadgen.py --port 8080 --path /item --rate 2000 --duration 5 --body '{"id": 1}'
It prints loadgen's JSON result. Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import loadgen  # a sibling script: run as `python bench/post_loadgen.py`, its folder is on sys.path

BODY = b'{"id": 1}'


class PostPool(loadgen.Pool):
    def __init__(self, loop: asyncio.AbstractEventLoop, port: int, path: str, max_conns: int):
        super().__init__(loop, port, path, max_conns)
        self.request = (
            f"POST {path} HTTP/1.1\r\nHost: {loadgen.HOST}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(BODY)}\r\n\r\n"
        ).encode() + BODY


def main(argv: list[str] | None = None) -> int:
    global BODY
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--body", default=BODY.decode())
    known, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    BODY = known.body.encode()
    loadgen.Pool = PostPool  # type: ignore[misc]  # loadgen.run() builds its pool from the module global
    return loadgen.main(rest)


if __name__ == "__main__":
    raise SystemExit(main())
