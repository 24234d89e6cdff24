"""Hosts as Linux network namespaces on one bridge (iproute2, as root), for the multi-host chaos scenario.

`Network(["a", "b", "c"])` makes a bridge in the root namespace with an address (`gateway`, where the scenario's
own servers listen: etcd, DNS, a PostgreSQL relay) and, per host, a namespace joined to the bridge by a veth pair,
with its own address on the bridge's /24 and its loopback up. Processes start inside a host with `popen`
(`ip netns exec`). Faults: `cut`/`restore` set the host's veth link down and up; `impair` delays and drops the
host's outgoing packets with `tc netem` when the kernel has it, else with an NFQUEUE rule and
`python -m testbed.netqueue` (same figures: constant delay, random loss); `clear` removes either.

Names carry a prefix, the creating process's id and a letter per network it made (`mbh<pid><letter>...`, within
Linux's 15-character interface names);
`Network` removes, at start, whatever an earlier run left behind whose process is gone, and on close (or any
failure while building) kills the processes still in its namespaces and deletes every namespace and link it made.
"""

from __future__ import annotations

import ctypes
import ipaddress
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PREFIX = "mbh"
_NAME = re.compile(rf"^{PREFIX}(\d+)")
_RUNS = itertools.count()  # networks made by this process: a letter after the pid keeps their names apart


class NetnsError(RuntimeError):
    """The namespaces could not be built (not root, iproute2 missing, or a command refused)."""


def unavailable() -> str | None:
    """Why hosts cannot be built here, or None when they can."""
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "building hosts as network namespaces needs root (ip netns add, veth pairs, a bridge)"
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) is not installed"
    return None


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20, check=False)
    if check and done.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done


CLONE_NEWNET = 0x40000000


def enter(ns: str) -> None:
    """Move the calling thread (only it) into namespace `ns`: the sockets it opens from now on live there."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into {ns}: {os.strerror(err)}")
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_inside(ns: str) -> None:
    """SIGKILL every process still running in namespace `ns` (started by this module's user in it)."""
    done = ip("netns", "pids", ns, check=False)
    for pid in (int(p) for p in done.stdout.split() if p.isdigit()):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def cleanup_leftovers() -> list[str]:
    """Delete namespaces and links named `mbh<pid>...` whose creating process is gone; what was removed."""
    removed: list[str] = []
    for line in ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        match = _NAME.match(name)
        if match and not _alive(int(match.group(1))):
            _kill_inside(name)
            ip("netns", "del", name, check=False)
            removed.append(name)
    for line in ip("-o", "link", "show", check=False).stdout.splitlines():
        parts = line.split(":")
        name = parts[1].strip().split("@")[0] if len(parts) > 1 else ""
        match = _NAME.match(name)
        if match and not _alive(int(match.group(1))):
            ip("link", "del", name, check=False)
            removed.append(name)
    return removed


def _free_subnet() -> ipaddress.IPv4Network:
    used = [ipaddress.ip_interface(f).network for f in re.findall(r"inet (\S+)", ip("-4", "-o", "addr").stdout)]
    start = os.getpid() % 200
    for k in range(200):
        candidate = ipaddress.ip_network(f"10.213.{(start + k) % 200 + 20}.0/24")
        if not any(candidate.overlaps(u) for u in used):
            return candidate
    raise NetnsError("no free /24 in 10.213.0.0/16 for the bridge")


@dataclass
class Host:
    name: str
    ns: str
    address: str  # on the bridge
    link: str  # the veth end in the root namespace (on the bridge)
    device: str  # the veth end inside the namespace
    queue: int
    shaper: subprocess.Popen[bytes] | None = None
    impairment: str = ""  # "netem" or "nfqueue" while impaired


@dataclass
class Network:
    names: list[str]
    folder: Path
    hosts: dict[str, Host] = field(default_factory=dict)
    bridge: str = ""
    gateway: str = ""
    left_over: list[str] = field(default_factory=list)
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __enter__(self) -> Network:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> Network:
        reason = unavailable()
        if reason is not None:
            raise NetnsError(reason)
        self.left_over = cleanup_leftovers()
        self.folder.mkdir(parents=True, exist_ok=True)
        tag = f"{PREFIX}{os.getpid()}{chr(ord('a') + next(_RUNS) % 26)}"
        subnet = _free_subnet()
        addresses = list(subnet.hosts())
        self.bridge, self.gateway = f"{tag}br", str(addresses[0])
        try:
            ip("link", "add", self.bridge, "type", "bridge")
            ip("addr", "add", f"{self.gateway}/{subnet.prefixlen}", "dev", self.bridge)
            ip("link", "set", self.bridge, "up")
            for index, name in enumerate(self.names):
                host = Host(name, f"{tag}{name}", str(addresses[index + 1]), f"{tag}{name}", "eth0", 100 + index)
                self.hosts[name] = host
                ip("netns", "add", host.ns)
                ip("link", "add", host.link, "type", "veth", "peer", "name", f"{tag}{name}p", "netns", host.ns)
                ip("-n", host.ns, "link", "set", f"{tag}{name}p", "name", host.device)
                ip("-n", host.ns, "addr", "add", f"{host.address}/{subnet.prefixlen}", "dev", host.device)
                ip("-n", host.ns, "link", "set", "lo", "up")
                ip("-n", host.ns, "link", "set", host.device, "up")
                ip("link", "set", host.link, "master", self.bridge)
                ip("link", "set", host.link, "up")
            self.wait_up(*self.hosts)
        except BaseException:
            self.close()
            raise
        return self

    def wait_up(self, *names: str, timeout: float = 10.0) -> None:
        """Until every named host's link carries packets: both veth ends and the bridge operationally up and the
        host's bridge port forwarding. The kernel applies a carrier change (and the queue that lets packets out)
        a moment after `ip link set up` returns; a packet sent before then is dropped, and a lost SYN costs a
        connect a second."""
        deadline = time.monotonic() + timeout
        waiting = list(names)
        while waiting:
            waiting = [name for name in waiting if not self._carries(self.hosts[name])]
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise NetnsError(f"links of {', '.join(waiting)} not up after {timeout:g} s")
            time.sleep(0.02)

    def _carries(self, host: Host) -> bool:
        sysfs = Path("/sys/class/net")
        try:
            if (sysfs / self.bridge / "operstate").read_text().strip() != "up":
                return False
            if (sysfs / host.link / "operstate").read_text().strip() != "up":
                return False
            if (sysfs / host.link / "brport" / "state").read_text().strip() != "3":  # BR_STATE_FORWARDING
                return False
        except OSError:
            return False
        inside = ip("-n", host.ns, "-o", "link", "show", "dev", host.device, check=False)
        return inside.returncode == 0 and "state UP" in inside.stdout

    # -- processes in a host ---------------------------------------------------------------------------
    def command(self, host: str, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.hosts[host].ns, *argv]

    def popen(self, host: str, argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        proc: subprocess.Popen[bytes] = subprocess.Popen(self.command(host, argv), **kwargs)
        self._procs.append(proc)
        return proc

    def run(self, host: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(host, argv), capture_output=True, text=True, timeout=20, check=False)

    # -- faults ---------------------------------------------------------------------------------------
    def cut(self, host: str) -> None:
        """The host's link goes down (its side on the bridge): nothing in or out until `restore`."""
        ip("link", "set", self.hosts[host].link, "down")

    def restore(self, host: str) -> None:
        ip("link", "set", self.hosts[host].link, "up")
        self.wait_up(host)

    def impair(self, host: str, delay_ms: float, loss_pct: float) -> str:
        """Delay and drop the host's outgoing packets; which mechanism did it ("netem" or "nfqueue")."""
        h = self.hosts[host]
        self.clear(host)
        netem = self.run(host, ["tc", "qdisc", "replace", "dev", h.device, "root", "netem",
                                "delay", f"{delay_ms:g}ms", "loss", f"{loss_pct:g}%"])
        if netem.returncode == 0:
            h.impairment = "netem"
            return h.impairment
        iptables = shutil.which("iptables-legacy") or shutil.which("iptables")
        if iptables is None:
            raise NetnsError(f"tc netem failed ({netem.stderr.strip()}) and iptables (the NFQUEUE fallback) "
                             "is not installed")
        h.shaper = self.popen(host, [sys.executable, "-m", "testbed.netqueue", "--queue", str(h.queue),
                                     "--delay-ms", f"{delay_ms:g}", "--loss-pct", f"{loss_pct:g}"],
                              stdout=subprocess.PIPE, stderr=(self.folder / f"netqueue-{host}.log").open("ab"),
                              cwd=Path(__file__).resolve().parent.parent)
        assert h.shaper.stdout is not None
        if h.shaper.stdout.readline().strip() != b"bound":
            raise NetnsError(f"testbed.netqueue did not bind queue {h.queue} in {h.ns}")
        rule = self.run(host, [iptables, "-I", "OUTPUT", "-o", h.device, "-j", "NFQUEUE", "--queue-num",
                               str(h.queue), "--queue-bypass"])
        if rule.returncode != 0:
            raise NetnsError(f"iptables NFQUEUE rule refused: {rule.stderr.strip()}")
        h.impairment = "nfqueue"
        return h.impairment

    def clear(self, host: str) -> None:
        h = self.hosts[host]
        if h.impairment == "netem":
            self.run(host, ["tc", "qdisc", "del", "dev", h.device, "root"])
        elif h.impairment == "nfqueue":
            iptables = shutil.which("iptables-legacy") or shutil.which("iptables") or "iptables"
            self.run(host, [iptables, "-D", "OUTPUT", "-o", h.device, "-j", "NFQUEUE", "--queue-num",
                            str(h.queue), "--queue-bypass"])
        if h.shaper is not None:
            h.shaper.terminate()
            try:
                h.shaper.wait(5)
            except subprocess.TimeoutExpired:
                h.shaper.kill()
            h.shaper = None
        h.impairment = ""

    # -- teardown -------------------------------------------------------------------------------------
    def close(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 5
        for proc in self._procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for host in self.hosts.values():
            _kill_inside(host.ns)
            ip("link", "del", host.link, check=False)
            ip("netns", "del", host.ns, check=False)
        if self.bridge:
            ip("link", "del", self.bridge, check=False)
        self.hosts.clear()


__all__ = ["Host", "NetnsError", "Network", "cleanup_leftovers", "ip", "unavailable"]
