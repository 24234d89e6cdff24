"""`${NAME}` in the secret fields of a config, read from the environment at load (meshbatch.config.env)."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshbatch.config import ConfigError, load, parse
from meshbatch.config.env import references, substitute

CONFIG = """
admin: {listen: 127.0.0.1:9901, token: "${ADMIN_TOKEN}"}
tracing: {exporter: otlp, headers: {authorization: "Bearer ${OTLP_TOKEN}", x-team: "$$team"},
          service_name: "svc-${NOT_SECRET}"}
listeners:
  - name: main
    listen: 127.0.0.1:8080
    routes:
      - name: orders
        match: {path_prefix: /orders}
        ingest:
          sink: {type: postgres, url: "postgresql://app:${DB_PASSWORD}@db:5432/orders"}
"""
ENV = {"ADMIN_TOKEN": "0123456789abcdef-token", "OTLP_TOKEN": "t0k", "DB_PASSWORD": "p$w:d"}


def test_secret_fields_take_their_values_from_the_environment() -> None:
    config = parse(CONFIG, env=ENV)
    assert config.admin is not None and config.admin.token == "0123456789abcdef-token"
    assert config.tracing is not None and config.tracing.headers == {"authorization": "Bearer t0k", "x-team": "$team"}
    sink = config.listeners[0].routes[0].ingest.sink  # type: ignore[union-attr]
    assert sink.url == "postgresql://app:p$w:d@db:5432/orders"  # a `$` in the value is not expanded again
    assert config.tracing.service_name == "svc-${NOT_SECRET}"  # only secret fields change with the environment


def test_without_an_environment_the_references_stay_as_written() -> None:
    config = parse(CONFIG)
    assert config.admin is not None and config.admin.token == "${ADMIN_TOKEN}"


def test_a_variable_that_is_not_set_is_an_error_with_its_path() -> None:
    with pytest.raises(ConfigError) as caught:
        parse(CONFIG, env={"ADMIN_TOKEN": ENV["ADMIN_TOKEN"]})
    assert sorted(str(p) for p in caught.value.problems) == [
        "listeners[0].routes[0].ingest.sink.url: ${DB_PASSWORD} is not set in the environment",
        "tracing.headers.authorization: ${OTLP_TOKEN} is not set in the environment",
    ]


def test_a_value_from_the_environment_is_validated_like_a_written_one() -> None:
    with pytest.raises(ConfigError) as caught:
        parse(CONFIG, env={**ENV, "ADMIN_TOKEN": "short"})
    assert [p.path for p in caught.value.problems] == ["admin.token"]
    assert "short" not in str(caught.value)


def test_load_reads_the_process_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(CONFIG)
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    config = load(path, log_notes=False)
    assert config.admin is not None and config.admin.token == ENV["ADMIN_TOKEN"]


@pytest.mark.parametrize("text", ["$", "${", "${}", "${1X}", "$NAME", "a$b", "${A", "$${A}", "${A}}", "\u0000${A}"])
def test_hostile_references_never_raise(text: str) -> None:
    out, missing = substitute(text, {"A": "v"})
    assert isinstance(out, str) and set(missing) <= {"A"}
    assert references("${A}$${B}${C_1}") == ["A", "C_1"]
    assert substitute("$${A}", {"A": "v"}) == ("${A}", [])
