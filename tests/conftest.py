"""Shared fixtures: real upstream servers (threads) and `meshbatch run` subprocesses on ephemeral ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import meshbatch.runtime.checks  # noqa: F401  (tests that parse configs judge them by every rule, as `check` does)
from testbed.proxy import MeshbatchProcess, write_config
from testbed.upstream import UpstreamServer


class MeshFactory:
    """Starts `meshbatch run` processes from config dicts; stops them all (SIGTERM, then kill) at teardown."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.processes: list[MeshbatchProcess] = []

    def config_path(self, name: str = "meshbatch.yaml") -> Path:
        return self.folder / name

    def start(self, config: dict[str, Any], name: str = "", run_args: tuple[str, ...] = ()) -> MeshbatchProcess:
        path = write_config(self.config_path(name or f"meshbatch-{len(self.processes)}.yaml"), config)
        process = MeshbatchProcess(path, run_args=run_args)
        self.processes.append(process)
        return process

    def close(self) -> None:
        for process in self.processes:
            try:
                process.terminate(timeout=10)
            except Exception:
                process.kill()


@pytest.fixture(scope="session")
def upstreams() -> Iterator[dict[str, UpstreamServer]]:
    """Three echo upstreams named a, b and c, shared by the whole session (their logs are reset per test)."""
    servers = {name: UpstreamServer(name).start() for name in ("a", "b", "c")}
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture
def upstream(upstreams: dict[str, UpstreamServer]) -> UpstreamServer:
    return upstreams["a"]


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[MeshFactory]:
    factory = MeshFactory(tmp_path)
    yield factory
    factory.close()


@pytest.fixture(scope="module")
def module_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshFactory]:
    factory = MeshFactory(tmp_path_factory.mktemp("mesh"))
    yield factory
    factory.close()
