"""`meshbatch run` as a subprocess on ephemeral ports.

The config's listen addresses use port 0; the process announces what it bound on stderr
(`meshbatch: listening name=NAME address=HOST:PORT`) and then `meshbatch: ready ...`. A reader thread collects
stderr so tests can wait for a line (reload, drain) with a bounded deadline.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml

LISTENING = re.compile(r"meshbatch: listening name=(\S+) address=(\S+)$")
READY = "meshbatch: ready"
START_TIMEOUT = 15.0


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


class MeshbatchProcess:
    """One running `meshbatch run --config FILE`; addresses by listener name (`admin` for the admin API)."""

    def __init__(self, config_path: Path, extra_args: tuple[str, ...] = (), run_args: tuple[str, ...] = (),
                 cwd: Path | None = None, env: dict[str, str] | None = None,
                 prefix: tuple[str, ...] = ()) -> None:
        """`prefix`: a command that runs the process, e.g. ("ip", "netns", "exec", NS) (it must exec it)."""
        self.config_path = config_path
        self.addresses: dict[str, str] = {}
        self.lines: list[str] = []
        self._cond = threading.Condition()
        env = dict(os.environ, **(env or {}), PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "meshbatch", *extra_args, "run", "--config", str(config_path), *run_args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
            cwd=cwd,
        )
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        try:
            self.wait_for_line(READY, START_TIMEOUT)
        except BaseException:
            self.kill()
            raise

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.rstrip("\n")
            with self._cond:
                self.lines.append(line)
                match = LISTENING.search(line)
                if match:
                    self.addresses[match.group(1)] = match.group(2)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    # waiting on stderr ---------------------------------------------------------------------------
    def wait_for_line(self, needle: str, timeout: float = 10.0, start: int = 0) -> str:
        """The first stderr line from index `start` on that contains `needle`; fails after `timeout`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines[start:]:
                    if needle in line:
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(
                        f"no stderr line with {needle!r} within {timeout}s (exit={self.proc.poll()}):\n"
                        + self.stderr
                    )
                self._cond.wait(min(left, 0.1))

    def mark(self) -> int:
        """The number of stderr lines so far: pass it as `start` to wait only for later lines."""
        with self._cond:
            return len(self.lines)

    @property
    def stderr(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    # addresses -----------------------------------------------------------------------------------
    def address(self, name: str) -> tuple[str, int]:
        host, _, port = self.addresses[name].rpartition(":")
        return host.strip("[]"), int(port)

    def url(self, name: str, path: str = "") -> str:
        return f"http://{self.addresses[name]}{path}"

    @property
    def admin_url(self) -> str:
        return self.url("admin")

    # lifecycle -----------------------------------------------------------------------------------
    def send_signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 15.0) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def terminate(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._reader.join(5)


def metric_value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels` in Prometheus text."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


__all__ = ["READY", "MeshbatchProcess", "metric_value", "write_config"]
