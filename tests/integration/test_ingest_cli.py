"""`meshbatch ingest dead-letters` and `meshbatch ingest replay` against a running `meshbatch run`: an event the
schema refuses (422) is listed with its stage, a replay through the pipeline leaves it refused, `--raw` stores
it; the admin token comes from the environment or a file, never the command line."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from test_ingest_services import ingest_config, wait_until

from testbed.cli import MESHBATCH
from testbed.proxy import MeshbatchProcess
from testbed.stores import sqlite_rows

TOKEN = "ingest-cli-admin-token-7"


def cli(*args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MESHBATCH_ADMIN_TOKEN"}
    if token is not None:
        env["MESHBATCH_ADMIN_TOKEN"] = token
    return subprocess.run([MESHBATCH, "ingest", *args], capture_output=True, text=True, timeout=30, env=env)


@pytest.fixture
def proxy(mesh: Any, tmp_path: Path) -> MeshbatchProcess:
    config = ingest_config(admin={"token": TOKEN}, log={"path": str(tmp_path / "log.db")},
                           sink={"type": "sqlite", "path": str(tmp_path / "sink.db")})
    config["listeners"][0]["routes"][0]["pipeline"] = [
        {"decode": {"format": "auto"}},
        {"validate": {"schema": {"required": ["t"], "properties": {"t": {"type": "number"}}},
                      "on_invalid": "dead_letter"}}]
    process: MeshbatchProcess = mesh.start(config)
    return process


def test_list_replay_and_replay_raw(proxy: MeshbatchProcess, tmp_path: Path) -> None:
    refused = httpx.post(proxy.url("main", "/events"), content=b'{"t": "hot"}', timeout=5)
    assert refused.status_code == 422 and refused.json()["reason"] == "events_dead_lettered"
    admin = ("--admin", proxy.addresses["admin"])

    denied = cli("dead-letters", *admin)
    assert denied.returncode == 1 and "HTTP 401" in denied.stderr and "bad_admin_token" in denied.stderr

    listed = cli("dead-letters", *admin, token=TOKEN)
    assert listed.returncode == 0, listed.stderr
    (letter,) = orjson.loads(listed.stdout)["dead_letters"]
    assert letter["stage"] == "pipeline[1].validate" and letter["body"] == '{"t":"hot"}'
    assert "1 dead letter(s) of route events" in listed.stderr

    again = cli("replay", *admin, token=TOKEN)
    assert again.returncode == 0, again.stderr
    assert orjson.loads(again.stdout)["refusals"] == [
        {"id": letter["id"], "reason": "schema_violation: $.t: 'hot' is not of type 'number'"}]
    assert "0 replayed through the pipeline" in again.stderr and "1 still refused" in again.stderr

    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    raw = cli("replay", *admin, "--token-file", str(token_file), "--id", letter["id"], "--raw")
    assert raw.returncode == 0, raw.stderr
    assert orjson.loads(raw.stdout)["replayed"] == 1 and "1 replayed as they were (--raw)" in raw.stderr
    wait_until(lambda: sqlite_rows(tmp_path / "sink.db") == [letter["id"]], 10, "the raw replay to be stored")

    missing = cli("replay", *admin, "--token-file", str(tmp_path / "nope"))
    assert missing.returncode == 1 and "cannot read" in missing.stderr
