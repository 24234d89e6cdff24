"""Throwaway PostgreSQL servers started from the installed binaries (`initdb`, `pg_ctl` under
/usr/lib/postgresql/*/bin), for the sharded-sink tests and the chaos suite: each in its own temporary directory,
on its own loopback port, trust authentication, killable (`pg_ctl stop -m immediate`) and restartable on the
same port with its data.

PostgreSQL refuses to run as root: as root, every command runs as the `postgres` user (`runuser`), and the
directories are made in /tmp (not under pytest's private temp dir, which that user cannot enter) and given to it.
One `initdb` makes a template that the other servers copy: (copying and starting one takes about a second).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

RUN_AS = "postgres"
# Settings for a test server: loopback only, no Unix socket, small, and no fsync (a killed server loses nothing
# the OS already has: `-m immediate` kills processes, not the machine).
SETTINGS = ("-c listen_addresses=127.0.0.1 -c unix_socket_directories= -c fsync=off -c full_page_writes=off "
            "-c max_connections=40 -c shared_buffers=16MB")


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL's bin directory (with initdb and pg_ctl), or None."""
    found = [p for p in Path("/usr/lib/postgresql").glob("*/bin")
             if (p / "initdb").exists() and (p / "pg_ctl").exists()]
    found.sort(key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    if found:
        return found[-1]
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb and shutil.which("pg_ctl") else None


def owner() -> str:
    """The database superuser of the servers: the user they run as."""
    return RUN_AS if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name


def _as_owner(argv: list[str]) -> list[str]:
    return ["runuser", "-u", RUN_AS, "--", *argv] if os.geteuid() == 0 else argv


def _give(path: Path) -> None:
    if os.geteuid() == 0:
        user = pwd.getpwnam(RUN_AS)
        for root, dirs, files in os.walk(path):
            os.chown(root, user.pw_uid, user.pw_gid)
            for name in [*dirs, *files]:
                os.chown(os.path.join(root, name), user.pw_uid, user.pw_gid, follow_symlinks=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class LocalPostgres:
    """One server: `start()`, `kill()` (immediate stop: a crash), `start()` again with the same data and port."""

    def __init__(self, bin_dir: Path, data: Path, port: int) -> None:
        self.bin = bin_dir
        self.data = data
        self.port = port
        self.logfile = data.parent / f"{data.name}.log"

    @property
    def url(self) -> str:
        return f"postgresql://{owner()}@127.0.0.1:{self.port}/postgres"

    def _pg_ctl(self, *args: str, timeout: float = 30) -> None:
        subprocess.run(_as_owner([str(self.bin / "pg_ctl"), "-D", str(self.data), *args]), check=True,
                       capture_output=True, timeout=timeout)

    def start(self) -> None:
        self._pg_ctl("start", "-w", "-t", "30", "-l", str(self.logfile), "-o", f"-p {self.port} {SETTINGS}")

    def kill(self) -> None:
        """`pg_ctl stop -m immediate`: every server process quits at once, no checkpoint (recovery on start)."""
        self._pg_ctl("stop", "-m", "immediate", "-w")

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            self._pg_ctl("stop", "-m", "fast", "-w", timeout=15)

    def log_text(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")
        except OSError:
            return ""


@contextlib.contextmanager
def local_postgres_servers(count: int, bin_dir: Path | None = None) -> Iterator[list[LocalPostgres]]:
    """`count` running servers, stopped and deleted on exit. Raises RuntimeError when PostgreSQL is not
    installed (callers decide whether that skips)."""
    bin_dir = bin_dir or postgres_bin()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL binaries (initdb, pg_ctl) are not installed")
    base = Path(tempfile.mkdtemp(prefix="meshbatch-pg-", dir="/tmp"))
    servers: list[LocalPostgres] = []
    try:
        os.chmod(base, 0o755)
        template = base / "template"
        _give(base)
        initdb = [str(bin_dir / "initdb"), "-D", str(template), "-A", "trust", "-U", owner(), "--no-sync", "-E",
                  "UTF8", "--locale=C"]
        subprocess.run(_as_owner(initdb),
                       check=True, capture_output=True, timeout=120)
        for i in range(count):
            data = base / f"pg{i}"
            shutil.copytree(template, data, symlinks=True)
            _give(data)
            os.chmod(data, 0o700)
            server = LocalPostgres(bin_dir, data, free_port())
            server.start()
            servers.append(server)
        yield servers
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(base, ignore_errors=True)


__all__ = ["LocalPostgres", "free_port", "local_postgres_servers", "owner", "postgres_bin"]
