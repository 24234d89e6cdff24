"""Shared harness pieces: tools, cores, ports, child processes, /proc accounting, machine facts, stats."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testbed import machine

LOOPBACK = "127.0.0.1"
SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")


class BenchError(RuntimeError):
    """A benchmark could not run (missing tool, a peer that would not start, a failed load run)."""


# ---------------------------------------------------------------- tools


def find_tool(name: str) -> str | None:
    """The path of an executable, looking in PATH and then in the sbin directories Debian uses."""
    found = shutil.which(name)
    if found:
        return found
    for folder in SBIN_DIRS:
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def require_tools(names: Iterable[str]) -> dict[str, str]:
    paths: dict[str, str] = {}
    missing: list[str] = []
    for name in names:
        path = find_tool(name)
        if path is None:
            missing.append(name)
        else:
            paths[name] = path
    if missing:
        raise BenchError(
            f"missing tools: {', '.join(missing)} (Debian: apt-get install nginx-light haproxy wrk; "
            "`make bench-deps` does it as root)"
        )
    return paths


def tool_version(argv: Sequence[str], timeout: float = 10.0) -> str:
    """The first non-empty line a `--version` style command prints (stdout or stderr)."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    for line in (done.stdout + "\n" + done.stderr).splitlines():
        if line.strip():
            return line.strip()
    return "unknown"


# ---------------------------------------------------------------- cores and ports


@dataclass(frozen=True)
class CorePlan:
    """Where things run: the proxy under test on its own core, load generator and upstream on another."""

    load: int | None
    proxy: int | None

    @property
    def pinned(self) -> bool:
        return self.load is not None and self.proxy is not None

    def prefix(self, role: str) -> list[str]:
        """A `taskset -c N` prefix for `role` ("load" or "proxy"), or nothing when pinning is impossible."""
        core = self.load if role == "load" else self.proxy
        taskset = find_tool("taskset")
        if core is None or taskset is None:
            return []
        return [taskset, "-c", str(core)]

    def describe(self) -> dict[str, Any]:
        return {"pinned": self.pinned, "load_and_upstream_core": self.load, "proxy_core": self.proxy}


def plan_cores(note: Callable[[str], None] | None = None) -> CorePlan:
    """The proxy's core and the load generator's (and upstream's); unpinned, with a warning to `note`, on fewer
    than 2 usable cores or without taskset."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2 or find_tool("taskset") is None:
        if note is not None:
            note("warning: fewer than 2 usable cores or no taskset; running unpinned")
        return CorePlan(load=None, proxy=None)
    return CorePlan(load=cores[0], proxy=cores[1])


@contextlib.contextmanager
def peer_workdir() -> Iterator[Path]:
    """A temporary directory for a scenario's configs and logs, readable by nginx's workers (which run as an
    unprivileged user when nginx is started as root)."""
    with tempfile.TemporaryDirectory(prefix="meshbatch-bench-") as tmp:
        workdir = Path(tmp)
        workdir.chmod(0o755)
        yield workdir


def free_port() -> int:
    """An ephemeral loopback port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


# ---------------------------------------------------------------- child processes


class Service:
    """A child process in its own process group, its output in a log file; `stop()` ends the whole group."""

    def __init__(self, name: str, argv: Sequence[str], log_dir: Path, env: dict[str, str] | None = None):
        self.name = name
        self.argv = list(argv)
        self.log_path = log_dir / f"{name}.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        # Whatever is left of the group (workers of a master that died first) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=timeout)


def http_get(port: int, path: str = "/", timeout: float = 2.0) -> tuple[int, bytes]:
    """One GET over a fresh connection to loopback: (status, body). Small answers only (Content-Length)."""
    request = f"GET {path} HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\nConnection: close\r\n\r\n".encode()
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks: list[bytes] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    if len(status_line) < 2 or not status_line[1].isdigit():
        raise OSError(f"not an HTTP answer: {raw[:80]!r}")
    return int(status_line[1]), body


def wait_ready(service: Service | None, port: int, expect_body: bytes, timeout: float = 20.0) -> None:
    """Poll until GET / on `port` answers 200 with `expect_body`; fail early if the process exits."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if service is not None and not service.alive():
            code = service.proc.returncode
            raise BenchError(f"{service.name} exited with {code} before it was ready:\n{service.log_tail()}")
        try:
            status, body = http_get(port)
            if status == 200 and body == expect_body:
                return
            last = f"status {status} body {body[:60]!r}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.05)
    tail = service.log_tail() if service is not None else ""
    name = service.name if service is not None else f"port {port}"
    raise BenchError(f"{name} not ready within {timeout:.0f}s ({last})\n{tail}")


# ---------------------------------------------------------------- /proc accounting

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the command name, which is in parentheses and may hold spaces.
    return raw[raw.rindex(")") + 2 :].split()


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants (an nginx master and its worker, say)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU seconds of the processes (utime and stime of /proc/PID/stat)."""
    ticks = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / CLOCK_TICKS


def status_kib(pids: Iterable[int], field: str) -> int:
    """The sum of one /proc/PID/status size field over the processes (VmRSS: resident now; VmHWM: its peak), in
    KiB; a process gone meanwhile counts 0."""
    total = 0
    for pid in pids:
        try:
            lines = Path(f"/proc/{pid}/status").read_text().splitlines()
        except OSError:
            continue
        total += sum(int(line.split()[1]) for line in lines if line.startswith(f"{field}:"))
    return total


def peak_rss_kib(pids: Iterable[int]) -> int:
    """The sum of the processes' peak resident sizes (VmHWM), in KiB."""
    return status_kib(pids, "VmHWM")


def core_times() -> dict[int, tuple[int, int, int]]:
    """Per core (busy, steal, total) jiffies from /proc/stat, to tell how busy a core was over a run."""
    times: dict[int, tuple[int, int, int]] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/stat").read_text().splitlines():
            name, *fields = line.split()
            if not name.startswith("cpu") or name == "cpu":
                continue
            user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in fields[:8])
            busy = user + nice + system + irq + softirq
            times[int(name[3:])] = (busy, steal, busy + idle + iowait + steal)
    return times


def core_usage(before: dict[int, tuple[int, int, int]], after: dict[int, tuple[int, int, int]]) -> dict[str, Any]:
    """Busy and stolen fractions per core between two `core_times()` snapshots."""
    usage: dict[str, Any] = {}
    for core, (busy, steal, total) in after.items():
        if core not in before:
            continue
        b_busy, b_steal, b_total = before[core]
        span = total - b_total
        if span > 0:
            usage[str(core)] = {"busy": (busy - b_busy) / span, "steal": (steal - b_steal) / span}
    return usage


# ---------------------------------------------------------------- machine facts and stats


def machine_facts(versions: dict[str, str]) -> dict[str, Any]:
    return {
        **machine.machine_facts(),
        "versions": versions,
        "note": "shared machine: absolute figures drift between runs; compare peers of the same run (ratios)",
    }


def summarize(values: Sequence[float]) -> dict[str, float | int | None]:
    """Median with min-max over repeated runs."""
    if not values:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b
