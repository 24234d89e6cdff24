"""docs/ingestion.md's complete example, as a reader would run it: its config through `meshbatch check` and
`meshbatch run` (PostgreSQL as the sink: 127.0.0.1:5432, database `test`), the shell commands it shows run
with bash and curl, and each answer compared with the one printed under it (ids compared by their shape).

Only what cannot run here is changed: listen addresses (ephemeral ports), the log's path, the database URL and
the table name. Skipped when PostgreSQL does not answer, unless MESHBATCH_REQUIRE_SERVICES is set.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml
from test_ingest_services import require, wait_until

from testbed.cli import MESHBATCH
from testbed.proxy import MeshbatchProcess, metric_value, write_config
from testbed.stores import PG_URL, sql

DOC = Path(__file__).resolve().parents[2] / "docs" / "ingestion.md"
E_ID = re.compile(r"\be\.[0-9a-f]{11}-[0-9a-f]{32}\b")
K_SCOPE = re.compile(r"\bk\.[0-9a-f]{32}\.")


def example() -> tuple[dict[str, Any], str, list[tuple[str, str]]]:
    """The example's config, schema, and (command, printed answer) pairs."""
    text = DOC.read_text()
    section = text[text.index("## A complete example"):text.index("## Acceptance")]
    blocks = re.findall(r"```(\w*)\n(.*?)```", section, re.S)
    config = yaml.safe_load(next(body for kind, body in blocks if kind == "yaml"))
    schema = next(body for kind, body in blocks if kind == "json")
    console = next(body for kind, body in blocks if kind == "")
    pairs: list[tuple[str, str]] = []
    command: list[str] = []
    reading_command = False
    for line in console.splitlines():
        if line.startswith("$ "):
            command, reading_command = [line[2:]], True
            pairs.append(("", ""))
        elif reading_command and command[-1].rstrip().endswith(("|", "\\")):
            command.append(line)
        else:
            reading_command = False
            pairs[-1] = ("\n".join(command), pairs[-1][1] + line + "\n")
    return config, schema, pairs


def shape(answer: str) -> Any:
    return orjson.loads(K_SCOPE.sub("k.SCOPE.", E_ID.sub("E-ID", answer)))


@pytest.fixture
def table() -> Iterator[str]:
    require(PG_URL, "PostgreSQL")
    name = f"mb_doc_readings_{secrets.token_hex(4)}"
    yield name
    asyncio.run(sql(PG_URL, f"DROP TABLE IF EXISTS {name}"))


def test_the_complete_example_runs_as_printed(tmp_path: Path, table: str) -> None:
    config, schema, pairs = example()
    assert len(pairs) == 4
    route = config["listeners"][0]["routes"][0]
    steps = [next(iter(step)) for step in route["pipeline"]]
    assert steps.index("transform") < steps.index("validate"), "the rename runs before the schema that needs it"
    config["admin"]["listen"] = "127.0.0.1:0"
    config["listeners"][0]["listen"] = "127.0.0.1:0"
    route["ingest"]["log"]["path"] = str(tmp_path / "readings.db")
    route["ingest"]["sink"].update(url=PG_URL, table=table)
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "reading.json").write_text(schema)
    path = write_config(tmp_path / "mesh.yaml", config)

    checked = subprocess.run([MESHBATCH, "check", str(path)], capture_output=True, text=True, timeout=30,
                             cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    proxy = MeshbatchProcess(path, cwd=tmp_path)
    try:
        for command, printed in pairs:
            command = command.replace("localhost:8080", proxy.addresses["ingress"])
            command = command.replace("localhost:9901", proxy.addresses["admin"])
            ran = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True,
                                 timeout=30)
            assert ran.returncode == 0 and ran.stdout, f"{command}: {ran.stderr}"
            assert shape(ran.stdout) == shape(printed), f"{command}\nprinted: {printed}\ngot:     {ran.stdout}"

        def rows() -> list[Any]:
            try:
                return asyncio.run(sql(PG_URL, f"SELECT event_id, temperature, site, checked_at, doc FROM {table} "
                                               "ORDER BY event_id"))
            except Exception:
                return []

        stored = wait_until(lambda: len(rows()) == 2 and rows(), 20, "the two accepted events in PostgreSQL")
        assert [r["event_id"][:2] for r in stored] == ["e.", "k."]
        for row in stored:
            assert (row["temperature"], row["site"]) == (35.0, "eu") and row["checked_at"] is not None
            assert orjson.loads(row["doc"])["source"] == "sensors"
        assert "temp" not in orjson.loads(stored[0]["doc"]), "the older sensor's field was renamed"
        metrics = httpx.get(proxy.url("admin", "/metrics"), timeout=5).text
        assert metric_value(metrics, "meshbatch_ingest_events_accepted_total", route="readings") == 2
        assert metric_value(metrics, "meshbatch_ingest_events_dead_lettered_total", stage="pipeline") == 1
    finally:
        proxy.terminate()
