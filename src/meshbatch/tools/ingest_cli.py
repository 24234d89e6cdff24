"""`meshbatch ingest`: the dead letters of a running proxy's ingest routes, through its admin API.

    meshbatch ingest dead-letters [--route R] [--limit N]          the oldest letters: id, stage, reason, body
    meshbatch ingest replay [--route R] [--id ID ...] [--limit N]  back into the log through the route's pipeline
    meshbatch ingest replay --raw ...                              ... or as they are, without the pipeline

Both need the admin token (`admin.token`): from `--token-file FILE`, else the environment variable
`MESHBATCH_ADMIN_TOKEN` (never an argument: the command line of a process is visible to every user of the
machine). The API's answer is printed as JSON on stdout and a summary on stderr; the exit status is 0 when the
API answered, 1 when it refused or could not be reached (what it said is printed).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import orjson

from meshbatch.tools.admin_client import AdminError, call_json

TOKEN_ENV = "MESHBATCH_ADMIN_TOKEN"


def _token(args: argparse.Namespace) -> str | None:
    if args.token_file:
        try:
            return Path(args.token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise AdminError(f"--token-file {args.token_file}: cannot read: {exc.strerror}") from None
    return os.environ.get(TOKEN_ENV) or None


def _print(answer: Any) -> None:
    sys.stdout.write(orjson.dumps(answer, option=orjson.OPT_INDENT_2).decode() + "\n")


def _dead_letters(args: argparse.Namespace) -> int:
    try:
        answer = call_json(args.admin, "GET", "/ingest/dead_letters", token=_token(args), route=args.route,
                           limit=args.limit)
    except AdminError as exc:
        print(f"meshbatch ingest dead-letters: {exc}", file=sys.stderr)
        return 1
    _print(answer)
    letters = answer.get("dead_letters", [])
    print(f"{len(letters)} dead letter(s) of route {answer.get('route')}", file=sys.stderr)
    return 0


def _replay(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"raw": args.raw}
    if args.route:
        body["route"] = args.route
    if args.ids:
        body["ids"] = args.ids
    if args.limit is not None:
        body["limit"] = args.limit
    try:
        answer = call_json(args.admin, "POST", "/ingest/replay", body=body, token=_token(args))
    except AdminError as exc:
        print(f"meshbatch ingest replay: {exc}", file=sys.stderr)
        return 1
    _print(answer)
    how = "as they were (--raw)" if answer.get("raw") else "through the pipeline"
    summary = (f"route {answer.get('route')}: {answer.get('replayed', 0)} replayed {how}, "
               f"{answer.get('dropped', 0)} dropped by the filter, {answer.get('refused', 0)} still refused")
    if answer.get("refused"):
        summary += " (they stay dead letters; fix the route's pipeline and replay again, or --raw to store them)"
    print(summary, file=sys.stderr)
    return 0


def add_ingest(sub: Any) -> None:
    ingest = sub.add_parser("ingest", help="dead letters of a running proxy's ingest routes: list, replay")
    commands = ingest.add_subparsers(dest="ingest_command", metavar="{dead-letters,replay}", required=True)
    for name, helptext, func in (
            ("dead-letters", "list the oldest dead letters (id, stage, reason, body)", _dead_letters),
            ("replay", "dead letters back into the log, through the route's pipeline (or --raw)", _replay)):
        command = commands.add_parser(name, help=helptext)
        command.add_argument("--admin", default="http://127.0.0.1:9901",
                             help="the admin API (default 127.0.0.1:9901)")
        command.add_argument("--route", help="the ingest route (needed when the proxy has several)")
        command.add_argument("--token-file", metavar="FILE",
                             help=f"a file holding admin.token (default: ${TOKEN_ENV})")
        command.set_defaults(func=func)
        if name == "dead-letters":
            command.add_argument("--limit", type=int, default=100, help="how many, oldest first (default 100)")
        else:
            command.add_argument("--id", dest="ids", action="append", metavar="ID",
                                 help="replay this letter (repeat for several; default: the oldest --limit)")
            command.add_argument("--limit", type=int, default=None, help="replay at most this many, oldest first")
            command.add_argument("--raw", action="store_true",
                                 help="move the letters as they are, without the pipeline (stores what it refuses)")


__all__ = ["TOKEN_ENV", "add_ingest"]
