"""The extras: which are installed (found without importing), the error that names one, and the extensions of the
proxy declared with theirs."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshbatch import extras


def test_installed_extras_are_found_without_importing_them() -> None:
    for extra in extras.EXTRAS:
        assert extras.missing(extra) == [], extra  # the development install has every extra
    extras.require("postgres", "the postgres sink")


def test_a_missing_library_names_its_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(extras.EXTRAS, "postgres", ("mb_no_such_driver",))
    assert extras.missing("postgres") == ["mb_no_such_driver"]
    with pytest.raises(extras.MissingExtraError) as info:
        extras.require("postgres", "ingest sink 'postgres'")
    assert str(info.value) == ("ingest sink 'postgres' needs mb_no_such_driver, which is not installed: "
                               "pip install 'meshbatch[postgres]'")
    with pytest.raises(extras.MissingExtraError, match=r"meshbatch\[postgres\]"):
        extras.import_module("mb_no_such_driver.sub", "postgres", "ingest sink 'postgres'")


def test_a_submodule_of_a_missing_package_counts_as_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(extras.EXTRAS, "otel", ("mb_no_such_pkg.sdk",))
    assert extras.missing("otel") == ["mb_no_such_pkg.sdk"]
    assert extras.provides("otel", "mb_no_such_pkg") and extras.provides("otel", "mb_no_such_pkg.sdk.trace")
    assert not extras.provides("otel", "mb_other")


def test_the_proxys_optional_extensions_declare_their_extras() -> None:
    from meshbatch.discovery import SOURCES
    from meshbatch.ingest.logs import LOGS
    from meshbatch.ingest.sinks import SINKS

    assert SOURCES._lazy["kubernetes"] == ("meshbatch.discovery.kubernetes", "k8s")
    assert SINKS._lazy["postgres"] == ("meshbatch.ingest.sinks.postgres", "postgres")
    assert LOGS._lazy["jetstream"] == ("meshbatch.ingest.logs.jetstream", "nats")
    assert {"static", "file", "dns", "etcd", "kubernetes"} <= set(SOURCES.names())
    assert {"cluster", "postgres", "sqlite"} <= set(SINKS.names())


NEEDS_EVERY_EXTRA = """
listeners:
  - name: main
    listen: 127.0.0.1:0
    routes:
      - name: events
        match: {path_prefix: /events}
        ingest:
          log: {backend: jetstream, url: "nats://127.0.0.1:4222"}
          sink: {type: postgres, url: "postgresql://db/x", table: events}
      - name: api
        match: {path_prefix: /}
        cluster: svc
clusters:
  - name: svc
    discovery: {type: kubernetes, service: svc, port_name: http}
tracing: {exporter: console}
"""


def test_check_names_the_extras_a_config_needs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from meshbatch.cli import main

    path = tmp_path / "mesh.yaml"
    path.write_text(NEEDS_EVERY_EXTRA)
    assert main(["check", str(path)]) == 0, capsys.readouterr().err  # every extra installed: a good config
    capsys.readouterr()
    for extra in ("postgres", "nats", "k8s", "otel"):
        monkeypatch.setitem(extras.EXTRAS, extra, (f"mb_not_installed_{extra}",))
    assert main(["check", str(path)]) == 1
    err = capsys.readouterr().err
    for line in ("listeners[0].routes[0].ingest.log.backend: ingest log backend 'jetstream' needs the 'nats' extra: "
                 "pip install 'meshbatch[nats]'",
                 "listeners[0].routes[0].ingest.sink.type: ingest sink 'postgres' needs the 'postgres' extra: "
                 "pip install 'meshbatch[postgres]'",
                 "clusters[0].discovery.type: discovery type 'kubernetes' needs the 'k8s' extra: "
                 "pip install 'meshbatch[k8s]'",
                 "tracing: tracing needs the 'otel' extra (OpenTelemetry): pip install 'meshbatch[otel]'"):
        assert line in err, err


def test_the_demo_without_its_extra_says_what_to_install(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from meshbatch.cli import main

    monkeypatch.setitem(extras.EXTRAS, "demo", ("mb_not_installed_plots",))
    assert main(["demo", "--duration", "0.1"]) == 1
    assert capsys.readouterr().err.strip() == ("meshbatch: meshbatch demo needs mb_not_installed_plots, which is not "
                                               "installed: pip install 'meshbatch[demo]'")
