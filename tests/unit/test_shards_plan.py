"""`meshbatch shards plan`: keys from a file or stdin, or sampled from SQLite shards (a mapped column, or the
payload's JSON); only keys moving to an added shard move; errors are one clear line; URLs are redacted."""

from __future__ import annotations

import contextlib
import io
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from meshbatch.cli import main
from meshbatch.config import parse
from meshbatch.config.plain import IngestRoute, of
from meshbatch.ingest.record import Record
from meshbatch.ingest.sinks import SINKS, SinkContext


def write(tmp_path: Path, sink: dict[str, Any]) -> Path:
    config = {"listeners": [{"name": "main", "listen": "127.0.0.1:0", "routes": [
        {"name": "events", "match": {"path_prefix": "/events"},
         "ingest": {"log": {"path": str(tmp_path / "log.db")}, "sink": sink}}]}]}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["shards", "plan", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


PG = {"type": "postgres", "shards": ["postgresql://app:pw@db-0/x", "postgresql://app:pw@db-1/x",
                                     "postgresql://app:pw@db-2/x"], "shard_by": "device"}


def test_adding_a_shard_moves_keys_only_to_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write(tmp_path, PG)
    keys = tmp_path / "keys.txt"
    keys.write_text("".join(f"device-{i}\n" for i in range(4000)) + "\ndevice-1\n")  # blank and repeated lines
    code, out, _ = run(capsys, str(config), "--route", "events", "--add", "postgresql://app:secret@db-3/x",
                       "--keys", str(keys), "--json")
    assert code == 0
    plan = orjson.loads(out)
    assert plan["keys"] == 4000 and plan["shards_after"] == ["0", "1", "2", "3"]
    assert {f["to"] for f in plan["flows"]} == {"3"} and 0.22 < plan["moved_fraction"] < 0.28
    code, out, _ = run(capsys, str(config), "--route", "events", "--add", "postgresql://app:secret@db-3/x",
                       "--keys", str(keys))
    assert "moving:" in out and "-> 3:" in out and "secret" not in out and "<redacted>" in out
    code, out, _ = run(capsys, str(config), "--route", "events", "--add", "x", "--name", "east", "--list",
                       "--keys", str(keys))
    lines = [line.split("\t") for line in out.splitlines()]
    assert 0.22 < len(lines) / 4000 < 0.28  # another name, other keys, the same share
    assert all(to == "east" for _, _, to in lines)


def test_keys_from_stdin_and_removing_a_shard(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    config = write(tmp_path, PG)
    monkeypatch.setattr("sys.stdin", io.StringIO("".join(f"k{i}\n" for i in range(900))))
    code, out, _ = run(capsys, str(config), "--route", "events", "--remove", "1", "--json")
    plan = orjson.loads(out)
    assert code == 0 and plan["source"] == "stdin"
    assert {f["from"] for f in plan["flows"]} == {"1"} and plan["moved"] == plan["before"]["1"]


@pytest.mark.parametrize(("argv", "message"), [
    (["--route", "nope", "--add", "x"], "no route named 'nope'"),
    (["--route", "events"], "say what changes"),
    (["--route", "events", "--add", "x", "--name", "1"], "a shard named '1' exists already"),
    (["--route", "events", "--remove", "9"], "no shard named '9'"),
    (["--route", "events", "--add", "x", "--keys", "/nonexistent/keys"], "No such file"),
])
def test_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                             message: str) -> None:
    code, _, err = run(capsys, str(write(tmp_path, PG)), *argv)
    assert code == 1 and message in err and err.count("\n") == 1


def test_a_route_without_shards_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write(tmp_path, {"type": "sqlite", "path": str(tmp_path / "s.db")})
    code, _, err = run(capsys, str(config), "--route", "events", "--add", "x")
    assert code == 1 and "has no sharded sink" in err


@pytest.mark.parametrize("mapped", [True, False])
async def test_keys_sampled_from_sqlite_shards(tmp_path: Path, mapped: bool) -> None:
    sink_config: dict[str, Any] = {"type": "sqlite", "shards": [str(tmp_path / f"s{i}.db") for i in range(3)],
                                   "shard_by": "meta.device"}
    if mapped:
        sink_config["columns"] = {"dev": "meta.device", "n": {"field": "n", "type": "bigint"}}
    path = write(tmp_path, sink_config)
    route = of(parse(path.read_text()).listeners[0].routes[0])
    assert isinstance(route, IngestRoute)
    sink = SINKS.get("sqlite")(SinkContext(route, None, 5.0))
    records = [Record(f"id-{i}", orjson.dumps({"n": i, "meta": {"device": f"d{i % 50}" if i % 7 else i % 50}}),
                      1.0) for i in range(300)]
    assert all(o is None for o in await sink.deliver(records))
    await sink.close()
    capture = io.StringIO()
    with contextlib.redirect_stdout(capture):
        code = main(["shards", "plan", str(path), "--route", "events", "--add", str(tmp_path / "s3.db"),
                     "--from-sinks", "--json"])
    plan = orjson.loads(capture.getvalue())
    assert code == 0 and plan["source"] == "the shards' tables"
    assert plan["keys"] == len({f"d{i % 50}" if i % 7 else str(i % 50) for i in range(300)})
    assert plan["misplaced"] == 0 and {f["to"] for f in plan["flows"]} <= {"3"}


def test_rows_left_on_an_old_shard_are_counted_as_misplaced(tmp_path: Path) -> None:
    paths = [tmp_path / f"s{i}.db" for i in range(3)]
    config = write(tmp_path, {"type": "sqlite", "shards": [str(p) for p in paths], "shard_by": "device",
                              "columns": {"device": "device"}})
    for path in paths:  # every shard holds the key "d1": two of them by mistake
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE events (event_id TEXT PRIMARY KEY, device TEXT)")
        db.execute("INSERT INTO events VALUES (?, 'd1')", (f"id-{path.name}",))
        db.commit()
        db.close()
    capture = io.StringIO()
    with contextlib.redirect_stdout(capture):
        code = main(["shards", "plan", str(config), "--route", "events", "--from-sinks", "--json"])
    figures = orjson.loads(capture.getvalue())
    assert code == 0 and figures["keys"] == 1 and figures["misplaced"] == 1 and figures["moved"] == 0


async def test_a_field_name_with_quotes_is_a_parameter_not_sql(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    field = "it's"
    config = write(tmp_path, {"type": "sqlite", "shards": [str(tmp_path / f"s{i}.db") for i in range(2)],
                              "shard_by": field})
    route = of(parse(config.read_text()).listeners[0].routes[0])
    assert isinstance(route, IngestRoute)
    sink = SINKS.get("sqlite")(SinkContext(route, None, 5.0))
    records = [Record(f"i{n}", orjson.dumps({field: f"v{n}"}), 1.0) for n in range(20)]
    assert await sink.deliver(records) == [None] * 20
    await sink.close()
    code, out, _ = run(capsys, str(config), "--route", "events", "--from-sinks", "--json")
    figures = orjson.loads(out)
    assert code == 0 and figures["keys"] == 20 and figures["misplaced"] == 0
    quoted = write(tmp_path, {"type": "sqlite", "shards": [str(tmp_path / f"s{i}.db") for i in range(2)],
                              "shard_by": 'say "hi"'})
    code, _, err = run(capsys, str(quoted), "--route", "events", "--from-sinks")
    assert code == 1 and "give the keys with --keys" in err


def test_a_key_file_that_is_not_utf8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = tmp_path / "keys.bin"
    keys.write_bytes(b"ok\n\xff\xfe\n")
    code, _, err = run(capsys, str(write(tmp_path, PG)), "--route", "events", "--add", "x", "--keys", str(keys))
    assert code == 1 and "utf-8" in err.lower()
